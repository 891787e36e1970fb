"""HierarchicalAttention against a float64 NumPy reference, on every SIMD backend (docs/contract.md §4)."""

from __future__ import annotations

import asyncio
import math
import pickle
import threading

import numpy as np
import pytest
from conftest import randn
from hypothesis import given, settings
from hypothesis import strategies as st

import ruvector as rv


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def hierarchical_reference(levels, level_weights=None, query=None, scale=None):
    """Plain float64, straight from the formulas of docs/contract.md §4."""
    levels = [np.asarray(x, dtype=np.float64) for x in levels]
    d = levels[0].shape[1]
    if scale is None:
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    q = None if query is None else np.asarray(query, dtype=np.float64)
    alphas, summaries = [], []
    for x in levels:
        u = q if q is not None else x.mean(axis=0)
        alpha = softmax(scale * (x @ u))
        alphas.append(alpha)
        summaries.append(alpha @ x)
    s = np.array(summaries).reshape(len(levels), d)
    if level_weights is not None:
        w = np.asarray(level_weights, dtype=np.float64)
        beta = w / w.sum()
    else:
        ubar = q if q is not None else s.mean(axis=0)
        beta = softmax(scale * (s @ ubar))
    weights = np.zeros((len(levels), max(len(a) for a in alphas)))
    for i, a in enumerate(alphas):
        weights[i, : len(a)] = a
    return (beta @ s)[None, :], weights, s, beta


def check(out, ref, tol=2e-5, need_weights=True):
    ref_values, ref_weights, ref_s, ref_beta = ref
    assert out.values.dtype == np.float32 and out.values.shape == ref_values.shape
    np.testing.assert_allclose(out.values, ref_values, rtol=tol, atol=tol)
    if need_weights:
        assert out.weights.dtype == np.float32 and out.weights.shape == ref_weights.shape
        np.testing.assert_allclose(out.weights, ref_weights, rtol=tol, atol=tol)
    else:
        assert out.weights is None
    summaries = out.metadata["level_summaries"]
    assert isinstance(summaries, np.ndarray) and summaries.dtype == np.float32
    np.testing.assert_allclose(summaries, ref_s, rtol=tol, atol=tol)
    beta = out.metadata["level_weights"]
    assert isinstance(beta, list) and all(isinstance(b, float) for b in beta)
    np.testing.assert_allclose(beta, ref_beta, rtol=tol, atol=1e-7)


RAGGED = [  # rows per level, D
    ([1], 1),
    ([3], 4),
    ([2, 5, 1], 3),
    ([17, 1, 64, 9], 16),
    ([100, 300, 7], 65),
    ([5000, 3, 800], 40),  # levels longer than one row chunk
    ([1000] * 6, 256),
]


@pytest.mark.parametrize(("rows", "d"), RAGGED)
@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("with_query", [False, True])
def test_ragged_levels_match_numpy(backend, rng, rows, d, with_weights, with_query):
    levels = [randn(rng, n, d) for n in rows]
    lw = rng.uniform(0.0, 3.0, len(rows)) if with_weights else None
    query = randn(rng, d) if with_query else None
    ref = hierarchical_reference(levels, lw, query)
    attn = rv.HierarchicalAttention()
    check(attn.compute(levels, lw, query=query), ref)
    check(attn.compute(levels, lw, query=query, need_weights=False), ref, need_weights=False)


@pytest.mark.parametrize(("levels", "n", "d"), [(1, 1, 1), (2, 3, 4), (5, 40, 24), (16, 1000, 64)])
def test_stacked_array_matches_numpy(backend, rng, levels, n, d):
    x = randn(rng, levels, n, d)
    attn = rv.HierarchicalAttention()
    check(attn.compute(x), hierarchical_reference(list(x)))
    query = randn(rng, d)
    check(attn.compute(x, query=query), hierarchical_reference(list(x), query=query))
    # the same levels as a list or a tuple give the same numbers
    np.testing.assert_array_equal(attn.compute(tuple(x)).values, attn.compute(x).values)


def test_readme_worked_example(backend):
    # level 0 = rows (1,0), (0,1): its mean (½,½) scores both rows alike → α₀ = (½,½), s₀ = (½,½);
    # level 1 = one row (2,2) → s₁ = (2,2). ū = (1.25,1.25), logits (1/√2)·(1.25, 5).
    levels = [np.array([[1, 0], [0, 1]], np.float32), np.array([[2, 2]], np.float32)]
    out = rv.HierarchicalAttention().compute(levels)
    logits = np.array([1.25, 5.0]) / math.sqrt(2)
    beta = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(out.weights, [[0.5, 0.5], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out.metadata["level_summaries"], [[0.5, 0.5], [2, 2]], rtol=1e-6)
    np.testing.assert_allclose(out.metadata["level_weights"], beta, rtol=1e-6)
    np.testing.assert_allclose(out.values, np.full((1, 2), beta @ [0.5, 2.0]), rtol=1e-6)
    fixed = rv.HierarchicalAttention().compute(levels, level_weights=[1, 1])
    np.testing.assert_allclose(fixed.values, [[1.25, 1.25]], rtol=1e-6)


def test_scale_from_config(backend, rng):
    levels = [randn(rng, n, 12) for n in (4, 9, 2)]
    query = randn(rng, 12)
    out = rv.HierarchicalAttention({"scale": 0.3}).compute(levels, query=query)
    check(out, hierarchical_reference(levels, query=query, scale=0.3))


def test_level_weights_are_normalised(backend, rng):
    levels = [randn(rng, n, 6) for n in (3, 4, 5)]
    attn = rv.HierarchicalAttention()
    a = attn.compute(levels, [1.0, 2.0, 1.0])
    b = attn.compute(levels, np.array([10, 20, 10]))
    assert a.metadata["level_weights"] == pytest.approx([0.25, 0.5, 0.25])
    assert a.metadata["has_level_weights"] is True
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    # a zero weight drops its level; one-hot weights give that level's summary
    one_hot = attn.compute(levels, [0.0, 1.0, 0.0])
    np.testing.assert_allclose(one_hot.values[0], one_hot.metadata["level_summaries"][1], rtol=1e-6)
    # huge finite weights do not overflow
    huge = attn.compute(levels, [1e308, 1e308, 0.0])
    assert huge.metadata["level_weights"] == pytest.approx([0.5, 0.5, 0.0])


def test_weights_are_padded_softmaxes(backend, rng):
    levels = [randn(rng, n, 8) for n in (3, 7, 1)]
    out = rv.HierarchicalAttention().compute(levels)
    assert out.weights.shape == (3, 7)
    np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out.weights[0, 3:], 0.0)
    np.testing.assert_array_equal(out.weights[2], [1, 0, 0, 0, 0, 0, 0])
    # one-row levels: their summary is the row itself
    np.testing.assert_allclose(out.metadata["level_summaries"][2], levels[2][0], rtol=1e-6)


def test_metadata(rng):
    levels = [randn(rng, 4, 5), randn(rng, 2, 5)]
    out = rv.HierarchicalAttention().compute(levels)
    assert set(out.metadata) == {
        "attention_type",
        "num_levels",
        "has_level_weights",
        "level_weights",
        "level_summaries",
    }
    assert out.metadata["attention_type"] == "hierarchical"
    assert out.metadata["num_levels"] == 2
    assert out.metadata["has_level_weights"] is False
    assert out.metadata["level_summaries"].shape == (2, 5)
    assert sum(out.metadata["level_weights"]) == pytest.approx(1.0)
    assert out.values.shape == (1, 5)
    assert "hierarchical" in repr(out)


def test_inputs_of_other_types_are_converted(backend, rng):
    levels64 = [rng.standard_normal((n, 5)) for n in (3, 6)]
    query = rng.standard_normal(5)
    ref = hierarchical_reference([x.astype(np.float32) for x in levels64], [1, 3], query.astype(np.float32))
    attn = rv.HierarchicalAttention()
    check(attn.compute(levels64, [1, 3], query=query), ref)
    check(attn.compute([x.tolist() for x in levels64], (1, 3), query=query.tolist()), ref)
    strided = [randn(rng, n, 10)[:, ::2] for n in (4, 2)]
    check(attn.compute(strided), hierarchical_reference(strided))
    stacked = randn(rng, 3, 4, 6)
    check(attn.compute(stacked.tolist()), hierarchical_reference(list(stacked)))


def test_nan_propagates(backend, rng):
    levels = [randn(rng, n, 8) for n in (5, 6, 7)]
    levels[1][2, 3] = np.nan
    attn = rv.HierarchicalAttention()
    out = attn.compute(levels)
    assert np.all(np.isnan(out.values))
    s = out.metadata["level_summaries"]
    assert np.all(np.isnan(s[1])) and np.all(np.isfinite(s[[0, 2]]))
    assert np.all(np.isnan(out.weights[1, :6])) and np.all(np.isfinite(out.weights[[0, 2]]))
    # with level weights that drop level 1, 0·NaN is still NaN (IEEE), as in NumPy
    assert np.all(np.isnan(attn.compute(levels, [1, 0, 1]).values))
    # a NaN query makes every score NaN
    q = np.full(8, np.nan, np.float32)
    out = attn.compute(levels, query=q)
    assert np.all(np.isnan(out.values)) and np.all(np.isnan(out.metadata["level_weights"]))


def test_backends_agree(rng):
    levels = [randn(rng, n, 96) for n in (700, 30, 1200)]
    outputs = {}
    for name in rv._native._available_backends():
        rv.set_simd_backend(name)
        try:
            outputs[name] = rv.HierarchicalAttention().compute(levels).values
        finally:
            rv.set_simd_backend("auto")
    for vals in outputs.values():
        np.testing.assert_allclose(vals, outputs["scalar"], rtol=1e-5, atol=1e-6)


def test_thread_count_does_not_change_the_result(rng):
    levels = [randn(rng, 3000, 64) for _ in range(3)]
    attn = rv.HierarchicalAttention()
    before = rv.get_num_threads()
    try:
        rv.set_num_threads(1)
        one = attn.compute(levels).values
        rv.set_num_threads(2)
        two = attn.compute(levels).values
    finally:
        rv.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------
# Errors

A = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def test_empty_levels():
    attn = rv.HierarchicalAttention()
    with pytest.raises(rv.InvalidInputError, match="levels is empty"):
        attn.compute([])
    with pytest.raises(rv.InvalidInputError, match="levels is empty"):
        attn.compute(np.zeros((0, 3, 4), np.float32))
    with pytest.raises(rv.InvalidInputError, match="level 1 has no rows"):
        attn.compute([A, np.zeros((0, 3), np.float32)])
    with pytest.raises(rv.InvalidInputError, match="level 0 has no rows"):
        attn.compute(np.zeros((2, 0, 3), np.float32))


def test_mismatched_widths():
    with pytest.raises(rv.DimensionMismatchError, match="level 2 has 5 columns, level 0 has 3") as info:
        rv.HierarchicalAttention().compute([A, A, np.ones((2, 5), np.float32)])
    assert (info.value.expected, info.value.actual) == (3, 5)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (None, rv.InvalidInputError, "levels"),
        ("abc", rv.InvalidInputError, "levels"),
        ({"a": A}, rv.InvalidInputError, "levels"),
        (A, rv.DimensionMismatchError, "3-D"),
        (np.ones((2, 3, 4, 5), np.float32), rv.DimensionMismatchError, "3-D"),
        ([A, None], rv.InvalidInputError, r"levels\[1\]"),
        ([A, np.ones(3, np.float32)], rv.DimensionMismatchError, r"levels\[1\]"),
        ([A, "x"], rv.InvalidInputError, r"levels\[1\]"),
        ([A, A.astype(np.complex64)], rv.InvalidInputError, r"levels\[1\]"),
        ([[[1, 2], [3]]], rv.InvalidInputError, r"levels\[0\]"),
    ],
)
def test_bad_levels(bad, error, match):
    with pytest.raises(error, match=match):
        rv.HierarchicalAttention().compute(bad)


def test_bad_level_weights():
    attn = rv.HierarchicalAttention()
    with pytest.raises(rv.DimensionMismatchError, match="level_weights has 3 entries for 2 levels") as info:
        attn.compute([A, A], [1, 2, 3])
    assert (info.value.expected, info.value.actual) == (2, 3)
    for bad, match in (
        ([1, -1], "finite and >= 0"),
        ([1, np.nan], "finite"),
        ([np.inf, 1], "finite"),
        ([0, 0], "sum to 0"),
    ):
        with pytest.raises(rv.InvalidInputError, match=match):
            attn.compute([A, A], bad)
    with pytest.raises(rv.DimensionMismatchError, match="1-D"):
        attn.compute([A, A], [[1, 2]])
    for bad in ("ab", {"w": 1}, [1 + 2j, 1]):
        with pytest.raises(rv.InvalidInputError, match="level_weights"):
            attn.compute([A, A], bad)


def test_bad_query():
    attn = rv.HierarchicalAttention()
    with pytest.raises(rv.DimensionMismatchError, match="query has 4 entries, the levels have 3 columns") as info:
        attn.compute([A], query=np.ones(4))
    assert (info.value.expected, info.value.actual) == (3, 4)
    with pytest.raises(rv.DimensionMismatchError, match="1-D"):
        attn.compute([A], query=np.ones((1, 3)))
    with pytest.raises(rv.InvalidInputError, match="query"):
        attn.compute([A], query="abc")


def test_bad_config_and_keyword_types():
    with pytest.raises(rv.InvalidConfigError, match="unknown config key"):
        rv.HierarchicalAttention({"levels": 2})
    with pytest.raises(rv.InvalidConfigError, match="scale"):
        rv.HierarchicalAttention({"scale": -1.0})
    with pytest.raises(TypeError):
        rv.HierarchicalAttention().compute([A], need_weights="no")


def test_huge_padded_weights_rejected_before_allocating():
    # 200 000 levels of one row plus one of 10**6 rows → 2·10^11 padded weights (800 GB)
    big = np.lib.stride_tricks.as_strided(np.ones(1, np.float32), (1_000_000, 1), (0, 4))
    levels = [np.ones((1, 1), np.float32)] * 200_000 + [big]
    with pytest.raises((rv.InvalidInputError, MemoryError), match="need_weights=False"):
        rv.HierarchicalAttention().compute(levels)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.integers(0, 4), min_size=0, max_size=4),
    d=st.integers(0, 3),
    nw=st.integers(-1, 5),
    fill=st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf]),
    nq=st.integers(-1, 4),
)
def test_arbitrary_inputs_never_crash(rows, d, nw, fill, nq):
    levels = [np.full((n, d), 0.5, np.float32) for n in rows]
    lw = None if nw < 0 else np.full(nw, fill)
    query = None if nq < 0 else np.full(nq, 0.25, np.float32)
    try:
        out = rv.HierarchicalAttention().compute(levels, lw, query=query)
    except rv.InvalidInputError:
        return
    assert rows and min(rows) > 0
    assert lw is None or (len(lw) == len(rows) and np.isfinite(fill) and fill > 0)
    assert query is None or len(query) == d
    assert out.values.shape == (1, d) and np.all(np.isfinite(out.values))


# ---------------------------------------------------------------------------------------------
# Batch, async, pickling, threads


def test_compute_batch(rng):
    attn = rv.HierarchicalAttention()
    items = [[randn(rng, n, 8) for n in ns] for ns in ((3, 4), (1,), (9, 2, 5))]
    weights = [[1.0, 2.0], None, np.array([0.2, 0.3, 0.5])]
    calls = []
    outs = attn.compute_batch(
        items, weights, batch_config={"max_batch_size": 2}, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(2, 3), (3, 3)]
    for levels, lw, out in zip(items, weights, outs, strict=True):
        check(out, hierarchical_reference(levels, lw))
    stacked = randn(rng, 4, 3, 5, 8)  # [B, L, N, D]
    outs = attn.compute_batch(stacked, need_weights=False)
    for x, out in zip(stacked, outs, strict=True):
        check(out, hierarchical_reference(list(x)), need_weights=False)
    # one query for all items, or one per item
    q = randn(rng, 8)
    outs = attn.compute_batch(stacked, query=q)
    np.testing.assert_array_equal(outs[1].values, attn.compute(stacked[1], query=q).values)
    qs = randn(rng, 4, 8)
    for per_item in (qs, list(qs), qs.tolist(), [None, None, None, qs[3]]):  # plain lists and None entries too
        outs = attn.compute_batch(stacked, query=per_item)
        np.testing.assert_array_equal(outs[3].values, attn.compute(stacked[3], query=qs[3]).values)
    outs = attn.compute_batch(stacked, query=[None] * 4)  # None everywhere: each item's default query
    np.testing.assert_array_equal(outs[2].values, attn.compute(stacked[2]).values)


def test_bad_batch_item_raises_before_any_work(rng):
    attn = rv.HierarchicalAttention()
    items = [[randn(rng, 3, 4), randn(rng, 2, 4)] for _ in range(4)]
    items[3] = [randn(rng, 3, 4), randn(rng, 2, 5)]
    calls = []
    with pytest.raises(rv.DimensionMismatchError, match="item 3") as info:
        attn.compute_batch(items, progress=lambda d, t: calls.append(d))
    assert (info.value.expected, info.value.actual) == (4, 5)
    assert calls == []
    with pytest.raises(rv.InvalidInputError, match=r"item 1.*sum to 0"):
        attn.compute_batch(items[:3], [[1, 1], [0, 0], [1, 1]])
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        attn.compute_batch(items, [[1, 1]] * 3)


def test_async_calls(rng):
    attn = rv.HierarchicalAttention()
    x = randn(rng, 5, 4, 30, 16)

    async def main():
        singles = await asyncio.gather(*(attn.compute_async(x[i], [1, 2, 3, 4]) for i in range(5)))
        batch = await attn.compute_batch_async(x)
        with pytest.raises(rv.InvalidInputError):
            await attn.compute_async(x[0], [1, -1, 1, 1])
        return singles, batch

    singles, batch = asyncio.run(main())
    for i in range(5):
        np.testing.assert_array_equal(singles[i].values, attn.compute(x[i], [1, 2, 3, 4]).values)
        np.testing.assert_array_equal(batch[i].weights, attn.compute(x[i]).weights)


def test_pickle(rng):
    attn = rv.HierarchicalAttention({"scale": 0.2, "seed": 9})
    clone = pickle.loads(pickle.dumps(attn))
    assert type(clone) is rv.HierarchicalAttention and clone.config == attn.config
    levels = [randn(rng, n, 6) for n in (5, 2)]
    np.testing.assert_array_equal(clone.compute(levels).values, attn.compute(levels).values)
    assert len(clone.compute_batch([levels, levels])) == 2


def test_threads_share_one_object(rng):
    attn = rv.HierarchicalAttention()
    items = [[randn(rng, n, 32) for n in (500, 80, 1200)] for _ in range(6)]
    expected = [attn.compute(levels).values for levels in items]
    results: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            results[i] = attn.compute(items[i], need_weights=i % 2 == 0).values

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(6):
        np.testing.assert_array_equal(results[i], expected[i])

"""TemporalAttention against a float64 NumPy reference and torch SDPA, on every SIMD backend (docs/contract.md §4)."""

from __future__ import annotations

import asyncio
import json
import math
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import randn
from hypothesis import given, settings
from hypothesis import strategies as st

import ruvector as rv


def softmax_rows(scores, allowed):
    """Softmax over each row's allowed entries; zeros for a row with none; NaN propagates."""
    s = np.where(allowed, scores, -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        row_max = s.max(axis=-1, keepdims=True)
        row_max = np.where(row_max == -np.inf, 0.0, row_max)
        e = np.where(allowed, np.exp(s - row_max), 0.0)
        total = e.sum(axis=-1, keepdims=True)
        return np.where(total == 0, 0.0, e / np.where(total == 0, 1.0, total))


def temporal_reference(x, timestamps=None, *, scale=None, decay=0.0, causal=True, window=None):
    """Plain float64: s_ij = scale·x_i·x_j − decay·|t_i − t_j| over the allowed pairs."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    t = np.arange(n, dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if scale is None:
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    dt = np.abs(t[:, None] - t[None, :])
    scores = scale * (x @ x.T) - decay * dt
    allowed = np.ones((n, n), dtype=bool)
    if causal:
        allowed &= t[None, :] <= t[:, None]
    if window is not None:
        allowed &= dt <= window
    allowed |= np.eye(n, dtype=bool)
    weights = softmax_rows(scores, allowed)
    return weights @ x, weights


def check(out, ref_values, ref_weights, tol=2e-5):
    assert out.values.dtype == np.float32
    np.testing.assert_allclose(out.values, ref_values, rtol=tol, atol=tol)
    if ref_weights is None:
        assert out.weights is None
    else:
        assert out.weights.dtype == np.float32
        np.testing.assert_allclose(out.weights, ref_weights, rtol=tol, atol=tol)


def make_times(rng, n, kind):
    if kind is None:
        return None
    if kind == "sorted":
        return np.cumsum(rng.uniform(0.1, 2.0, n))
    if kind == "ties":  # unsorted, on a grid of quarter units: many equal times
        return np.round(rng.uniform(0, n / 4, n) * 4) / 4
    return rng.uniform(-50, 50, n)  # unsorted, distinct


SHAPES = [(1, 1), (2, 3), (7, 5), (33, 17), (65, 64), (257, 32), (600, 48)]
OPTIONS = [
    {},
    {"causal": False},
    {"decay_rate": 0.3},
    {"half_life": 4.0, "window": 6.0},
    {"causal": False, "decay_rate": 0.05, "window": 10.0},
]


@pytest.mark.parametrize(("t", "d"), SHAPES)
@pytest.mark.parametrize("times", [None, "sorted", "ties", "random"])
def test_matches_numpy(backend, rng, t, d, times):
    x = randn(rng, t, d)
    ts = make_times(rng, t, times)
    for options in OPTIONS:
        attn = rv.TemporalAttention(**options)
        decay = math.log(2) / options["half_life"] if "half_life" in options else options.get("decay_rate", 0.0)
        ref_v, ref_w = temporal_reference(
            x, ts, decay=decay, causal=options.get("causal", True), window=options.get("window")
        )
        check(attn.compute(x, ts), ref_v, ref_w)
        check(attn.compute(x, ts, need_weights=False), ref_v, None)


def test_matches_torch_sdpa_with_additive_bias(backend, rng):
    torch = pytest.importorskip("torch")
    t, d = 300, 32
    x = randn(rng, t, d)
    ts = np.sort(rng.uniform(0, 100, t))
    ts[rng.permutation(t)[:5]] = ts[0]  # a few ties, out of order
    lam, window = 0.2, 15.0
    dt = np.abs(ts[:, None] - ts[None, :])
    bias = -lam * dt
    bias[(ts[None, :] > ts[:, None]) | (dt > window)] = -np.inf
    np.fill_diagonal(bias, -lam * 0.0)
    xt = torch.from_numpy(x.astype(np.float64))
    expected = torch.nn.functional.scaled_dot_product_attention(
        xt[None], xt[None], xt[None], attn_mask=torch.from_numpy(bias)[None]
    )[0].numpy()
    out = rv.TemporalAttention(decay_rate=lam, window=window).compute(x, ts, need_weights=False)
    np.testing.assert_allclose(out.values, expected, rtol=2e-5, atol=2e-5)


def test_readme_worked_example(backend):
    # x = [[1,0],[0,1],[1,1]], t = [0,1,3], λ = 0.5, scale = 1/√2: row 1 sees j = 0, 1 with
    # scores −0.5 and 1/√2; row 2 sees all three with scores 1/√2 − 1.5, 1/√2 − 1, √2.
    x = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    out = rv.TemporalAttention(decay_rate=0.5).compute(x, timestamps=[0.0, 1.0, 3.0])
    r = 1 / math.sqrt(2)
    row1 = np.exp([-0.5, r])
    row2 = np.exp([r - 1.5, r - 1.0, 2 * r])
    expected = np.array([[1, 0, 0], [*(row1 / row1.sum()), 0], row2 / row2.sum()])
    np.testing.assert_allclose(out.weights, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.values, expected @ x, rtol=1e-6, atol=1e-7)
    # window 2: row 2 (t = 3) no longer sees t = 0
    out = rv.TemporalAttention(decay_rate=0.5, window=2).compute(x, timestamps=[0.0, 1.0, 3.0])
    row2 = np.exp([r - 1.0, 2 * r])
    np.testing.assert_allclose(out.weights[2], [0, *(row2 / row2.sum())], rtol=1e-6, atol=1e-7)


def test_causal_by_time_with_unsorted_timestamps(backend, rng):
    x = randn(rng, 5, 4)
    ts = np.array([3.0, 0.0, 2.0, 2.0, 7.0])
    out = rv.TemporalAttention().compute(x, ts)
    later = ts[None, :] > ts[:, None]
    np.testing.assert_array_equal(out.weights[later], 0.0)
    assert np.all(out.weights[~later] > 0)
    # event 1 is the earliest: it sees only itself
    np.testing.assert_allclose(out.values[1], x[1], rtol=1e-6)
    # events 2 and 3 share a time: each sees the other
    assert out.weights[2, 3] > 0 and out.weights[3, 2] > 0


def test_window_and_self_always_attended(backend, rng):
    x = randn(rng, 40, 8)
    ts = rng.permutation(40).astype(np.float64)
    for causal in (True, False):
        out = rv.TemporalAttention(causal=causal, window=0).compute(x, ts)
        np.testing.assert_allclose(out.weights, np.eye(40), atol=0)
        np.testing.assert_allclose(out.values, x, rtol=1e-6, atol=1e-7)
        out = rv.TemporalAttention(causal=causal, window=2).compute(x, ts)
        far = np.abs(ts[:, None] - ts[None, :]) > 2
        np.testing.assert_array_equal(out.weights[far], 0.0)
        np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, rtol=1e-5)


def test_strong_decay_keeps_only_self(backend, rng):
    x = randn(rng, 50, 8)
    out = rv.TemporalAttention(causal=False, decay_rate=1e30).compute(x)
    np.testing.assert_allclose(out.weights, np.eye(50), atol=1e-30)
    np.testing.assert_allclose(out.values, x, rtol=1e-6)


def test_half_life_is_a_decay_rate(rng):
    x, ts = randn(rng, 30, 6), rng.uniform(0, 10, 30)
    a = rv.TemporalAttention(half_life=2.5)
    b = rv.TemporalAttention(decay_rate=math.log(2) / 2.5)
    assert a.decay_rate == pytest.approx(math.log(2) / 2.5)
    assert a.compute(x, ts).metadata["decay_rate"] == pytest.approx(math.log(2) / 2.5)
    np.testing.assert_allclose(a.compute(x, ts).values, b.compute(x, ts).values, rtol=1e-6)
    # the decay halves a weight ratio every half_life: pairs at dt and dt + half_life
    x1 = np.ones((3, 2), np.float32)  # equal features: only the decay separates the weights
    w = rv.TemporalAttention(half_life=2.5).compute(x1, np.array([0.0, 2.5, 5.0])).weights
    assert w[2, 1] / w[2, 0] == pytest.approx(2.0, rel=1e-5)


def test_sorted_and_shuffled_events_agree(backend, rng):
    # Strictly increasing times run the kernel's index-causal path, shuffled ones its
    # time-causal path: the same events must give the same (permuted) results.
    t, d = 700, 24
    x, ts = randn(rng, t, d), np.cumsum(rng.uniform(0.5, 1.5, t))
    perm = rng.permutation(t)
    attn = rv.TemporalAttention(decay_rate=0.01, window=300.0)
    sorted_out = attn.compute(x, ts)
    shuffled_out = attn.compute(x[perm], ts[perm])
    np.testing.assert_allclose(shuffled_out.values, sorted_out.values[perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shuffled_out.weights, sorted_out.weights[np.ix_(perm, perm)], rtol=1e-5, atol=1e-6)


def test_unix_timestamps_keep_their_differences(backend, rng):
    x = randn(rng, 200, 16)
    offsets = np.cumsum(rng.uniform(0.01, 0.2, 200))
    ts = 1.7e9 + offsets  # float32 would round these to multiples of 128 s
    attn = rv.TemporalAttention(decay_rate=2.0, window=5.0)
    ref_v, ref_w = temporal_reference(x, ts, decay=2.0, window=5.0)
    check(attn.compute(x, ts), ref_v, ref_w, tol=1e-4)
    np.testing.assert_allclose(attn.compute(x, ts).values, attn.compute(x, offsets).values, rtol=1e-4, atol=1e-5)
    # int64 nanoseconds work too
    ns = (offsets * 1e9).astype(np.int64) + 1_700_000_000 * 10**9
    ref_v, _ = temporal_reference(x, ns, decay=2e-9, window=5e9)
    out = rv.TemporalAttention(decay_rate=2e-9, window=5e9).compute(x, ns, need_weights=False)
    np.testing.assert_allclose(out.values, ref_v, rtol=1e-4, atol=1e-4)


def test_metadata(rng):
    x = randn(rng, 9, 3)
    out = rv.TemporalAttention(decay_rate=0.25).compute(x)
    assert out.metadata == {
        "attention_type": "temporal",
        "sequence_length": 9,
        "has_timestamps": False,
        "causal": True,
        "decay_rate": 0.25,
    }
    out = rv.TemporalAttention(causal=False).compute(x, np.arange(9) * 2.0)
    assert out.metadata["has_timestamps"] is True and out.metadata["causal"] is False
    assert out.metadata["decay_rate"] == 0.0
    assert out.weights.shape == (9, 9) and out.values.shape == (9, 3)
    assert "temporal" in repr(out)


def test_scale_from_config(backend, rng):
    x = randn(rng, 20, 10)
    out = rv.TemporalAttention({"scale": 0.7}, decay_rate=0.1).compute(x)
    ref_v, ref_w = temporal_reference(x, scale=0.7, decay=0.1)
    check(out, ref_v, ref_w)


def test_dropout_in_config_does_not_act(rng):
    # compute has no training flag: TemporalAttention is deterministic whatever the dropout
    x = randn(rng, 30, 8)
    attn = rv.TemporalAttention({"dropout": 0.5})
    np.testing.assert_array_equal(attn.compute(x).values, attn.compute(x).values)
    check(attn.compute(x), *temporal_reference(x))


def test_inputs_of_other_types_are_converted(backend, rng):
    x64 = rng.standard_normal((12, 6))
    strided = randn(rng, 12, 12)[:, ::2]
    ts_list = [float(i) * 0.5 for i in range(12)]
    ref_v, ref_w = temporal_reference(x64.astype(np.float32), np.array(ts_list), decay=0.4)
    attn = rv.TemporalAttention(decay_rate=0.4)
    check(attn.compute(x64, ts_list), ref_v, ref_w)
    check(attn.compute(x64.tolist(), np.array(ts_list, np.float32)), ref_v, ref_w)
    ref_v, ref_w = temporal_reference(strided, np.arange(12)[::-1], decay=0.4)
    check(attn.compute(strided, np.arange(12, dtype=np.int32)[::-1]), ref_v, ref_w)


def test_empty_and_degenerate_shapes(backend, rng):
    attn = rv.TemporalAttention(decay_rate=0.5)
    out = attn.compute(np.zeros((0, 4), np.float32))
    assert out.values.shape == (0, 4) and out.weights.shape == (0, 0)
    out = attn.compute(np.zeros((0, 4), np.float32), np.zeros(0))
    assert out.values.shape == (0, 4) and out.metadata["has_timestamps"] is True
    # D = 0: only the decay and the masks shape the weights
    ts = np.array([0.0, 1.0, 3.0])
    out = attn.compute(np.zeros((3, 0), np.float32), ts)
    assert out.values.shape == (3, 0)
    _, ref_w = temporal_reference(np.zeros((3, 0)), ts, decay=0.5)
    np.testing.assert_allclose(out.weights, ref_w, rtol=1e-6)


@pytest.mark.parametrize("need_weights", [True, False])
def test_nan_propagates(backend, rng, need_weights):
    x = randn(rng, 40, 8)
    x[4, 2] = np.nan
    out = rv.TemporalAttention().compute(x, need_weights=need_weights)  # t_i = i, causal
    ref_v, _ = temporal_reference(x)
    # rows after 4 see a NaN score among finite ones: all NaN; earlier rows give 0·NaN = NaN
    # in column 2 only, as NumPy's weights @ x does. (Row 4 itself, whose every score is NaN,
    # is left out: see the kernel note in the report of issue 6.)
    assert np.all(np.isnan(out.values[5:])) and np.isnan(ref_v[5:]).all()
    rows = np.r_[0:4, 5:40]
    np.testing.assert_allclose(out.values[rows], ref_v[rows], rtol=2e-5, atol=2e-5)  # NaN == NaN here


def test_backends_agree(rng):
    x, ts = randn(rng, 300, 64), rng.uniform(0, 100, 300)
    outputs = {}
    for name in rv._native._available_backends():
        rv.set_simd_backend(name)
        try:
            outputs[name] = rv.TemporalAttention(decay_rate=0.05, window=40).compute(x, ts).values
        finally:
            rv.set_simd_backend("auto")
    for vals in outputs.values():
        np.testing.assert_allclose(vals, outputs["scalar"], rtol=1e-5, atol=1e-6)


def test_streaming_never_builds_the_t_by_t_matrix():
    # T = 8192: the weights alone would be 256 MB; streaming must stay far below that.
    setup = """
        import numpy as np, ruvector as rv
        x = np.random.default_rng(0).standard_normal((8192, 8)).astype(np.float32)
        attn = rv.TemporalAttention(decay_rate=0.01, window=500.0)
        attn.compute(x[:64], need_weights=False)
    """
    code = (
        "import json, resource\n"
        + textwrap.dedent(setup)
        + "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        + "out = attn.compute(x, need_weights=False)\n"
        + "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        + "print(json.dumps({'growth_kb': after - before, 'finite': bool(np.isfinite(out.values).all())}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["finite"]
    assert report["growth_kb"] < 64 * 1024


# ---------------------------------------------------------------------------------------------
# Errors


X = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)


def test_timestamp_errors():
    attn = rv.TemporalAttention()
    with pytest.raises(rv.DimensionMismatchError, match="timestamps has 4 entries, sequence has 5 rows") as info:
        attn.compute(X, np.arange(4.0))
    assert (info.value.expected, info.value.actual) == (5, 4)
    for bad in (np.nan, np.inf, -np.inf):
        ts = np.arange(5.0)
        ts[3] = bad
        with pytest.raises(rv.InvalidInputError, match=r"timestamps\[3\].*finite"):
            attn.compute(X, ts)
    with pytest.raises(rv.DimensionMismatchError, match="1-D"):
        attn.compute(X, np.arange(5.0)[:, None])
    with pytest.raises(rv.InvalidInputError, match="float32"):  # finite, but the span overflows float32
        attn.compute(X, np.array([-3e38, 0, 0, 0, 3e38]))
    for bad in ("abc", {"t": 1}, np.ones(5, np.complex64), [[1, 2], [3]], [None] * 5):
        with pytest.raises(rv.InvalidInputError, match="timestamps"):
            attn.compute(X, bad)


@pytest.mark.parametrize("bad", [None, "abc", {"a": 1}, 3 + 4j, [[1, 2], [3]], np.ones((2, 3), np.complex64)])
def test_bad_sequence(bad):
    with pytest.raises(rv.InvalidInputError, match="sequence"):
        rv.TemporalAttention().compute(bad)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_sequence_rank(shape):
    with pytest.raises(rv.DimensionMismatchError, match="2-D"):
        rv.TemporalAttention().compute(np.ones(shape, np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"decay_rate": 0.1, "half_life": 2.0}, "not both"),
        ({"decay_rate": 0.0, "half_life": 2.0}, "not both"),  # given, even as 0
        ({"decay_rate": -0.1}, "decay_rate"),
        ({"decay_rate": float("nan")}, "decay_rate"),
        ({"decay_rate": float("inf")}, "decay_rate"),
        ({"decay_rate": 1e300}, "float32"),
        ({"half_life": 0.0}, "half_life"),
        ({"half_life": -1.0}, "half_life"),
        ({"half_life": float("inf")}, "half_life"),
        ({"half_life": float("nan")}, "half_life"),
        ({"half_life": 1e-300}, "half_life"),
        ({"window": -1.0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"window": float("nan")}, "window"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(rv.InvalidConfigError, match=match):
        rv.TemporalAttention(**kwargs)


def test_bad_config_and_keyword_types():
    with pytest.raises(rv.InvalidConfigError, match="unknown config key"):
        rv.TemporalAttention({"heads": 2})
    with pytest.raises(rv.InvalidConfigError, match="dropout"):
        rv.TemporalAttention({"dropout": 1.5})
    with pytest.raises(TypeError):
        rv.TemporalAttention(causal="yes")
    with pytest.raises(TypeError):
        rv.TemporalAttention(decay_rate="fast")
    with pytest.raises(TypeError):
        rv.TemporalAttention().compute(X, need_weights="no")


def test_huge_weights_rejected_before_allocating():
    x = np.ones((1_000_000, 1), np.float32)
    with pytest.raises((rv.InvalidInputError, MemoryError), match="need_weights=False"):
        rv.TemporalAttention().compute(x)


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(0, 6),
    d=st.integers(0, 4),
    nts=st.integers(-1, 7),
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, -1e30]),
    window=st.sampled_from([None, 0.0, 1.5]),
)
def test_arbitrary_shapes_never_crash(t, d, nts, fill, window):
    x = np.full((t, d), 0.5, np.float32)
    ts = None if nts < 0 else np.full(nts, fill)
    attn = rv.TemporalAttention(decay_rate=0.5, window=window)
    try:
        out = attn.compute(x, ts)
    except rv.InvalidInputError:
        assert ts is not None and (nts != t or (t > 0 and not np.isfinite(fill)))
        return
    assert out.values.shape == (t, d)
    assert np.all(np.isfinite(out.values))


# ---------------------------------------------------------------------------------------------
# Batch, async, pickling, threads


def test_compute_batch_stacked_and_ragged(rng):
    attn = rv.TemporalAttention(decay_rate=0.1, window=20.0)
    xs = randn(rng, 4, 30, 8)
    outs = attn.compute_batch(xs)
    assert len(outs) == 4
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out.values, attn.compute(x).values)
        np.testing.assert_array_equal(out.weights, attn.compute(x).weights)
    seqs = [randn(rng, n, 8) for n in (5, 1, 40)]
    times = [rng.uniform(0, 30, n) for n in (5, 1, 40)]
    calls = []
    outs = attn.compute_batch(
        seqs, times, need_weights=False, batch_config={"max_batch_size": 2}, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(2, 3), (3, 3)]
    for x, ts, out in zip(seqs, times, outs, strict=True):
        assert out.weights is None
        ref_v, _ = temporal_reference(x, ts, decay=0.1, window=20.0)
        np.testing.assert_allclose(out.values, ref_v, rtol=2e-5, atol=2e-5)
    # per-item None timestamps mix with given ones
    outs = attn.compute_batch(seqs, [None, times[1], None])
    assert [o.metadata["has_timestamps"] for o in outs] == [False, True, False]


def test_bad_batch_item_raises_before_any_work(rng):
    attn = rv.TemporalAttention()
    seqs = [randn(rng, 6, 4) for _ in range(4)]
    times = [np.arange(6.0) for _ in range(4)]
    times[2] = np.arange(5.0)
    calls = []
    with pytest.raises(rv.DimensionMismatchError, match="item 2") as info:
        attn.compute_batch(seqs, times, progress=lambda d, t: calls.append(d))
    assert (info.value.expected, info.value.actual) == (6, 5)
    assert calls == []
    times[2] = np.array([0, 1, np.nan, 3, 4, 5])
    with pytest.raises(rv.InvalidInputError, match="item 2"):
        attn.compute_batch(seqs, times)
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        attn.compute_batch(seqs, times[:3])


def test_async_calls(rng):
    attn = rv.TemporalAttention(half_life=3.0)
    xs = randn(rng, 5, 25, 8)
    ts = rng.uniform(0, 10, (5, 25))

    async def main():
        singles = await asyncio.gather(*(attn.compute_async(xs[i], ts[i]) for i in range(5)))
        batch = await attn.compute_batch_async(xs, ts)
        with pytest.raises(rv.DimensionMismatchError):
            await attn.compute_async(xs[0], ts[0, :3])
        return singles, batch

    singles, batch = asyncio.run(main())
    for i in range(5):
        expected = attn.compute(xs[i], ts[i])
        np.testing.assert_array_equal(singles[i].values, expected.values)
        np.testing.assert_array_equal(batch[i].weights, expected.weights)


def test_pickle_keeps_options(rng):
    attn = rv.TemporalAttention({"scale": 0.4, "seed": 3}, causal=False, half_life=2.0, window=7.5)
    clone = pickle.loads(pickle.dumps(attn))
    assert type(clone) is rv.TemporalAttention
    assert clone.config == attn.config
    assert (clone.causal, clone.half_life, clone.window) == (False, 2.0, 7.5)
    assert clone.decay_rate == attn.decay_rate
    x, ts = randn(rng, 20, 6), rng.uniform(0, 20, 20)
    np.testing.assert_array_equal(clone.compute(x, ts).values, attn.compute(x, ts).values)
    assert clone.compute_batch([x], [ts])[0].values.shape == (20, 6)
    plain = pickle.loads(pickle.dumps(rv.TemporalAttention(decay_rate=0.3)))
    assert (plain.causal, plain.decay_rate, plain.half_life, plain.window) == (True, 0.3, None, None)


def test_threads_share_one_object(rng):
    attn = rv.TemporalAttention(decay_rate=0.05, window=50.0)
    xs = [randn(rng, 200, 16) for _ in range(6)]
    ts = [rng.uniform(0, 100, 200) for _ in range(6)]
    # each thread's call against the same call made serially (with and without weights the
    # kernels differ: the streaming one may run on AMX tiles, within float32 rounding)
    expected = [attn.compute(x, t, need_weights=i % 2 == 0).values for i, (x, t) in enumerate(zip(xs, ts, strict=True))]
    results: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            results[i] = attn.compute(xs[i], ts[i], need_weights=i % 2 == 0).values

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(6):
        np.testing.assert_allclose(results[i], expected[i], rtol=1e-6, atol=1e-7)


def test_integer_nanosecond_timestamps_keep_their_differences(backend, rng):
    """Epoch nanoseconds (~1.7e18, 256 ns apart in float64) are shifted by their minimum in
    integer arithmetic before they become floats: the same weights as the small offsets."""
    x = randn(rng, 6, 4)
    offsets = np.array([0, 100, 250, 1000, 1300, 7000], np.int64)
    base = 1_700_000_000_123_456_789
    layer = rv.TemporalAttention(decay_rate=0.002, window=1200)
    expected = layer.compute(x, offsets.astype(np.float64))
    for ts in (base + offsets, (base + offsets).astype(np.uint64), [int(t) for t in base + offsets]):
        out = layer.compute(x, ts)
        np.testing.assert_allclose(out.weights, expected.weights, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out.values, expected.values, rtol=1e-6, atol=1e-6)
    # the extremes of int64 (a span of 2^64 - 1) are still ordered: causal, the later one sees both
    w = rv.TemporalAttention().compute(x[:2], np.array([2**63 - 1, -(2**63)], np.int64)).weights
    assert w[1, 0] == 0.0 and w[0, 1] > 0.0

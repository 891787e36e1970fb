"""DotProductAttention against a float64 NumPy reference, on every SIMD backend (docs/contract.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import randn
from reference import dot_product_attention

import ruvector as rv

SHAPES = [  # (Lq, Lk, D, Dv)
    (1, 1, 1, 1),
    (2, 2, 2, 2),
    (1, 37, 16, 8),
    (37, 1, 16, 8),
    (7, 13, 5, 3),
    (33, 70, 17, 9),
    (65, 257, 64, 64),
    (130, 300, 96, 40),
    (1000, 1000, 64, 64),
]


def check(out, ref_values, ref_weights, tol=2e-5):
    assert out.values.dtype == np.float32
    np.testing.assert_allclose(out.values, ref_values, rtol=tol, atol=tol)
    if ref_weights is not None:
        assert out.weights.dtype == np.float32
        np.testing.assert_allclose(out.weights, ref_weights, rtol=tol, atol=tol)


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), SHAPES)
def test_matches_numpy(backend, rng, lq, lk, d, dv):
    q, k, v = randn(rng, lq, d), randn(rng, lk, d), randn(rng, lk, dv)
    attn = rv.DotProductAttention()
    ref_v, ref_w = dot_product_attention(q, k, v)
    check(attn.compute(q, k, v), ref_v, ref_w)
    streamed = attn.compute(q, k, v, need_weights=False)
    assert streamed.weights is None
    check(streamed, ref_v, None)


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), [(70, 3000, 64, 64), (45, 1500, 200, 120), (300, 2600, 33, 17)])
@pytest.mark.parametrize("kwargs", [{}, {"causal": True}, {"mask": True}])
def test_streaming_over_several_key_passes(backend, rng, lq, lk, d, dv, kwargs):
    """Without weights, long key ranges are streamed in passes (the packed keys and values of
    one pass stay in L2): each row's running max, sum and unnormalised output carry over."""
    q, k, v = randn(rng, lq, d), randn(rng, lk, d), randn(rng, lk, dv)
    if kwargs.get("mask"):
        kwargs = {"mask": rng.random((lq, lk)) > 0.4}
    ref_v, _ = dot_product_attention(q, k, v, **kwargs)
    check(rv.DotProductAttention().compute(q, k, v, need_weights=False, **kwargs), ref_v, None)


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), SHAPES[2:])
@pytest.mark.parametrize("need_weights", [True, False])
def test_bool_mask_and_causal(backend, rng, lq, lk, d, dv, need_weights):
    q, k, v = randn(rng, lq, d), randn(rng, lk, d), randn(rng, lk, dv)
    mask = rng.random((lq, lk)) > 0.3
    attn = rv.DotProductAttention()
    for kwargs in ({"mask": mask}, {"causal": True}, {"mask": mask, "causal": True}):
        ref_v, ref_w = dot_product_attention(q, k, v, **kwargs)
        out = attn.compute(q, k, v, need_weights=need_weights, **kwargs)
        check(out, ref_v, ref_w if need_weights else None)


@pytest.mark.parametrize("need_weights", [True, False])
def test_additive_mask(backend, rng, need_weights):
    q, k, v = randn(rng, 50, 24), randn(rng, 300, 24), randn(rng, 300, 12)
    mask = rng.standard_normal((50, 300)).astype(np.float32)
    mask[rng.random((50, 300)) < 0.2] = -np.inf
    ref_v, ref_w = dot_product_attention(q, k, v, mask=mask)
    out = rv.DotProductAttention().compute(q, k, v, mask=mask, need_weights=need_weights)
    check(out, ref_v, ref_w if need_weights else None)


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_rows_give_zeros(backend, rng, need_weights):
    q, k, v = randn(rng, 6, 8), randn(rng, 300, 8), randn(rng, 300, 5)
    mask = rng.random((6, 300)) > 0.5
    mask[2] = False
    mask[5] = False
    out = rv.DotProductAttention().compute(q, k, v, mask=mask, need_weights=need_weights)
    assert np.all(np.isfinite(out.values))
    np.testing.assert_array_equal(out.values[[2, 5]], 0.0)
    if need_weights:
        np.testing.assert_array_equal(out.weights[[2, 5]], 0.0)
    ref_v, _ = dot_product_attention(q, k, v, mask=mask)
    check(out, ref_v, None)


def test_causal_with_more_queries_than_keys(backend, rng):
    # top-left aligned, as torch's is_causal: query i sees keys j <= i
    q, k, v = randn(rng, 9, 4), randn(rng, 3, 4), randn(rng, 3, 2)
    ref_v, ref_w = dot_product_attention(q, k, v, causal=True)
    check(rv.DotProductAttention().compute(q, k, v, causal=True), ref_v, ref_w)


def test_scale_multiplies_scores(backend, rng):
    q, k, v = randn(rng, 20, 16), randn(rng, 30, 16), randn(rng, 30, 16)
    out = rv.DotProductAttention({"scale": 0.37}).compute(q, k, v)
    ref_v, ref_w = dot_product_attention(q, k, v, scale=0.37)
    check(out, ref_v, ref_w)
    assert out.metadata["scale"] == pytest.approx(0.37)
    default = rv.DotProductAttention().compute(q, k, v)
    assert default.metadata["scale"] == pytest.approx(1 / np.sqrt(16))


def test_metadata_and_repr(rng):
    x = randn(rng, 3, 4)
    out = rv.DotProductAttention().compute(x, x, x)
    assert out.metadata["attention_type"] == "dot_product"
    assert out.metadata["simd_backend"] == rv.get_simd_backend()
    assert "dot_product" in repr(out) and "float32[3, 4]" in repr(out)


def test_inputs_of_other_types_are_converted(backend, rng):
    q64 = rng.standard_normal((5, 6))
    k_strided = randn(rng, 8, 12)[:, ::2]
    v_list = randn(rng, 8, 3).tolist()
    out = rv.DotProductAttention().compute(q64, k_strided, v_list)
    ref_v, ref_w = dot_product_attention(q64.astype(np.float32), k_strided, np.array(v_list, np.float32))
    check(out, ref_v, ref_w)
    ints = rv.DotProductAttention().compute(np.ones((2, 2), np.int32), np.eye(2, dtype=np.int64), np.eye(2))
    assert ints.values.dtype == np.float32


def test_outputs_own_their_memory(rng):
    q = randn(rng, 4, 4)
    out = rv.DotProductAttention().compute(q, q, q)
    assert out.values.flags.c_contiguous and out.values.flags.writeable
    assert not np.shares_memory(out.values, q)
    out.values[:] = 1.0  # writing to the result does not disturb anything else
    again = rv.DotProductAttention().compute(q, q, q)
    assert not np.allclose(again.values, 1.0)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lk", [5, 40, 300])
def test_nan_propagates(backend, rng, need_weights, causal, lk):
    q, k, v = randn(rng, 4, 8), randn(rng, lk, 8), randn(rng, lk, 8)
    q[1, 3] = np.nan
    out = rv.DotProductAttention().compute(q, k, v, causal=causal, need_weights=need_weights)
    assert np.all(np.isnan(out.values[1]))
    assert np.all(np.isfinite(np.delete(out.values, 1, axis=0)))
    if need_weights:
        assert np.all(np.isnan(out.weights[1, : 2 if causal else lk]))
    ref_v, _ = dot_product_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(out.values, ref_v, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize(("lk", "nan_key"), [(5, 3), (20, 3), (20, 17), (40, 35), (300, 123)])
def test_nan_among_masked_scores(backend, rng, need_weights, lk, nan_key):
    """A row whose only allowed score is NaN (the rest masked out): the NaN reaches every
    weight of the row and every value, wherever the NaN lies in the row (the row maximum can
    come out NaN or -inf by lane position)."""
    q, k, v = randn(rng, 4, 8), randn(rng, lk, 8), randn(rng, lk, 8)
    k[nan_key, 0] = np.nan
    mask = np.ones((4, lk), dtype=bool)
    mask[2] = False
    mask[2, nan_key] = True  # row 2 sees only the NaN key
    out = rv.DotProductAttention().compute(q, k, v, mask=mask, need_weights=need_weights)
    ref_v, ref_w = dot_product_attention(q, k, v, mask=mask)
    assert np.all(np.isnan(out.values[2])) and np.all(np.isnan(ref_v[2]))
    if need_weights:
        np.testing.assert_array_equal(np.isnan(out.weights[2]), np.isnan(ref_w[2]))
    # the other rows see the NaN key too: theirs are NaN as well, as in the reference
    np.testing.assert_array_equal(np.isnan(out.values), np.isnan(ref_v))


def test_empty_inputs(backend, rng):
    attn = rv.DotProductAttention()
    out = attn.compute(np.zeros((0, 4), np.float32), randn(rng, 3, 4), randn(rng, 3, 2))
    assert out.values.shape == (0, 2) and out.weights.shape == (0, 3)
    out = attn.compute(randn(rng, 3, 4), np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32))
    np.testing.assert_array_equal(out.values, np.zeros((3, 2)))


class TestDropout:
    def test_inference_is_deterministic(self, rng):
        q = randn(rng, 20, 8)
        attn = rv.DotProductAttention({"dropout": 0.5})
        a, b = attn.compute(q, q, q), attn.compute(q, q, q)
        np.testing.assert_array_equal(a.values, b.values)
        ref_v, _ = dot_product_attention(q, q, q)
        check(a, ref_v, None)

    def test_training_drops_and_rescales(self, backend, rng):
        q, k, v = randn(rng, 64, 8), randn(rng, 128, 8), randn(rng, 128, 4)
        p = 0.3
        out = rv.DotProductAttention({"dropout": p, "seed": 7}).compute(q, k, v, training=True)
        _, ref_w = dot_product_attention(q, k, v)
        dropped = out.weights == 0
        assert 0.25 < dropped.mean() < 0.35
        np.testing.assert_allclose(out.weights[~dropped], ref_w[~dropped] / (1 - p), rtol=2e-5, atol=1e-7)
        # the values are the applied (dropped) weights times V
        np.testing.assert_allclose(out.values, out.weights.astype(np.float64) @ v, rtol=1e-4, atol=1e-5)

    def test_seeded_objects_replay_their_masks(self, rng):
        q = randn(rng, 30, 8)
        a = rv.DotProductAttention({"dropout": 0.5, "seed": 3})
        b = rv.DotProductAttention({"dropout": 0.5, "seed": 3})
        first_a, second_a = a.compute(q, q, q, training=True), a.compute(q, q, q, training=True)
        first_b = b.compute(q, q, q, training=True)
        np.testing.assert_array_equal(first_a.weights, first_b.weights)
        assert not np.array_equal(first_a.weights, second_a.weights)
        other = rv.DotProductAttention({"dropout": 0.5, "seed": 4}).compute(q, q, q, training=True)
        assert not np.array_equal(first_a.weights, other.weights)

    def test_streaming_training_matches_weights_path(self, backend, rng):
        q, k, v = randn(rng, 70, 8), randn(rng, 300, 8), randn(rng, 300, 4)
        a = rv.DotProductAttention({"dropout": 0.2, "seed": 11})
        b = rv.DotProductAttention({"dropout": 0.2, "seed": 11})
        with_w = a.compute(q, k, v, training=True)
        streamed = b.compute(q, k, v, training=True, need_weights=False)
        np.testing.assert_allclose(streamed.values, with_w.values, rtol=1e-4, atol=1e-5)

    def test_backends_drop_the_same_entries(self, rng):
        q = randn(rng, 16, 8)
        results = []
        for name in rv._native._available_backends():
            rv.set_simd_backend(name)
            try:
                results.append(rv.DotProductAttention({"dropout": 0.4}).compute(q, q, q, training=True).weights)
            finally:
                rv.set_simd_backend("auto")
        for w in results[1:]:
            np.testing.assert_array_equal(w == 0, results[0] == 0)


def test_backends_agree(rng):
    q, k, v = randn(rng, 100, 64), randn(rng, 200, 64), randn(rng, 200, 32)
    outputs = {}
    for name in rv._native._available_backends():
        rv.set_simd_backend(name)
        try:
            outputs[name] = rv.DotProductAttention().compute(q, k, v, causal=True).values
        finally:
            rv.set_simd_backend("auto")
    base = outputs["scalar"]
    for vals in outputs.values():
        np.testing.assert_allclose(vals, base, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("magnitude", [3e4, 1e6])
def test_huge_scores_stay_finite(backend, rng, need_weights, magnitude):
    # scores ~1e9..1e12: softmax is one-hot; the largest score must give exp(0) exactly on every
    # backend (no fused multiply-subtract leaving its rounding error in the exponent)
    x = randn(rng, 8, 10) * np.float32(magnitude)
    out = rv.DotProductAttention().compute(x, x, x, need_weights=need_weights)
    assert np.all(np.isfinite(out.values))
    assert not np.all(out.values == 0, axis=1).any()
    if need_weights:
        np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, rtol=1e-6)
    big_scale = rv.DotProductAttention({"scale": 1e9}).compute(x, x, x, need_weights=need_weights)
    assert np.all(np.isfinite(big_scale.values))


@pytest.mark.parametrize("need_weights", [True, False])
def test_fully_masked_row_ignores_inf_values(backend, rng, need_weights):
    x = randn(rng, 3, 4)
    v = x.copy()
    v[1, 0] = np.inf
    mask = np.ones((3, 3), bool)
    mask[0] = False
    out = rv.DotProductAttention().compute(x, x, v, mask=mask, need_weights=need_weights)
    np.testing.assert_array_equal(out.values[0], 0.0)


def test_metadata_scale_is_exact():
    x = np.ones((2, 16), np.float32)
    assert rv.DotProductAttention({"scale": 0.37}).compute(x, x, x).metadata["scale"] == 0.37
    assert rv.DotProductAttention().compute(x, x, x).metadata["scale"] == 1 / np.sqrt(16)
    assert rv.DotProductAttention().compute(x[:, :2], x[:, :2], x).metadata["scale"] == 1 / np.sqrt(2)

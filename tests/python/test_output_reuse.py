"""Large outputs are reused between calls (output_matrix / recycle_output in cpp/src/memory): a
buffer NumPy frees serves the next call of the same size. Each mechanism must write every
element of a reused buffer, so the buffers here are poisoned with NaN before they are freed."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from conftest import randn

import ruvector as rv

# >= 1 MB outputs (the cache's threshold) for every mechanism below.
L, D = 600, 512


def _poison_and_free(out: rv.AttentionOutput) -> None:
    for array in (out.values, out.weights):
        if array is not None:
            array.fill(np.nan)
    del out
    gc.collect()


def _graph_inputs(rng, n=3000):
    x = randn(rng, n, 128)
    # some nodes without incoming edges, and existing self-loops
    edges = rng.integers(0, n // 2, size=(7 * n, 2))
    edges[:50, 1] = edges[:50, 0]
    return x, rv.GraphStructure(edges, n)


CASES = {
    "dot_product": lambda rng: (
        rv.DotProductAttention(),
        (randn(rng, L, D), randn(rng, L, D), randn(rng, L, D)),
        {},
    ),
    "dot_product_causal": lambda rng: (
        rv.DotProductAttention(),
        (randn(rng, L, D), randn(rng, L, D), randn(rng, L, D)),
        {"causal": True},
    ),
    "multi_head_mean": lambda rng: (
        rv.MultiHeadAttention({"num_heads": 8}, embed_dim=D),
        (randn(rng, L, D), randn(rng, L, D), randn(rng, L, D)),
        {},
    ),
    "multi_head_per_head": lambda rng: (
        rv.MultiHeadAttention({"num_heads": 8}, embed_dim=D),
        (randn(rng, L, D), randn(rng, L, D), randn(rng, L, D)),
        {"average_weights": False},
    ),
    "temporal": lambda rng: (rv.TemporalAttention(), (randn(rng, L, D),), {}),
    "graph": lambda rng: (rv.GraphAttention({"num_heads": 8, "head_dim": 16}), _graph_inputs(rng), {}),
    "graph_no_self_loops": lambda rng: (
        rv.GraphAttention({"num_heads": 8, "head_dim": 16}, add_self_loops=False),
        _graph_inputs(rng),
        {},
    ),
    "gatv2_mean": lambda rng: (
        rv.GraphAttention({"num_heads": 8, "head_dim": 16}, variant="gatv2", concat=False),
        _graph_inputs(rng, n=20_000),  # [N, 16] values: 1.3 MB
        {},
    ),
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reused_output_buffers_are_fully_overwritten(rng, case, need_weights):
    layer, args, kwargs = CASES[case](rng)
    expected = layer.compute(*args, need_weights=need_weights, **kwargs)
    values = expected.values.copy()
    weights = None if expected.weights is None else expected.weights.copy()
    assert values.nbytes >= 1 << 20 or (weights is not None and weights.nbytes >= 1 << 20)
    for _ in range(2):
        _poison_and_free(expected)
        expected = layer.compute(*args, need_weights=need_weights, **kwargs)
        np.testing.assert_array_equal(expected.values, values)
        if weights is None:
            assert expected.weights is None
        else:
            np.testing.assert_array_equal(expected.weights, weights)


def test_outputs_alive_together_never_share_a_buffer(rng):
    attn = rv.DotProductAttention()
    q = randn(rng, L, D)
    first = attn.compute(q, q, q)
    _poison_and_free(attn.compute(q, q, q))  # one buffer of this size back in the cache
    second = attn.compute(q, q, q)
    third = attn.compute(q, q, q)
    buffers = {first.values.ctypes.data, second.values.ctypes.data, third.values.ctypes.data}
    assert len(buffers) == 3
    np.testing.assert_array_equal(second.values, first.values)
    np.testing.assert_array_equal(third.values, first.values)


def test_a_freed_large_output_serves_the_next_call_of_its_size(rng):
    attn = rv.DotProductAttention()
    q = randn(rng, L, D)
    out = attn.compute(q, q, q, need_weights=False)
    address = out.values.ctypes.data
    del out
    gc.collect()
    assert attn.compute(q, q, q, need_weights=False).values.ctypes.data == address
    small = randn(rng, 4, 8)  # below 1 MB: plain allocations, nothing kept
    assert attn.compute(small, small, small).values.shape == (4, 8)


def test_small_batch_outputs_are_reused_and_fully_overwritten(rng):
    """Items of 16 KB to 1 MB (a batch's outputs, made on pool workers) are kept for reuse too."""
    attn = rv.DotProductAttention()
    q, k, v = (randn(rng, 12, 256, 64) for _ in range(3))  # 64 KB values, 256 KB weights per item
    for need_weights in (False, True):
        outs = attn.compute_batch(q, k, v, need_weights=need_weights)
        expected = [(o.values.copy(), None if o.weights is None else o.weights.copy()) for o in outs]
        addresses = {o.values.ctypes.data for o in outs}
        for _ in range(2):
            for o in outs:
                _poison_and_free(o)
            del o
            outs.clear()
            gc.collect()
            outs = attn.compute_batch(q, k, v, need_weights=need_weights)
            assert {o.values.ctypes.data for o in outs} == addresses
            for o, (values, weights) in zip(outs, expected, strict=True):
                np.testing.assert_array_equal(o.values, values)
                if weights is None:
                    assert o.weights is None
                else:
                    np.testing.assert_array_equal(o.weights, weights)

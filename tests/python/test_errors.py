"""Malformed input raises the typed errors of SPEC §6 with messages that say how to fix it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ruvector as rv

X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "bad",
    [None, "abc", b"xy", {"a": 1}, 3 + 4j, np.ones((4, 3), np.complex64), [[1, 2], [3]], [["a", "b"]], object()],
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_non_arrays_raise_invalid_input(bad, position):
    args = [X, X, X]
    args[position] = bad
    with pytest.raises(rv.InvalidInputError) as info:
        rv.DotProductAttention().compute(*args)
    assert ["query", "key", "value"][position] in str(info.value)


@pytest.mark.parametrize("shape", [(), (3,), (2, 4, 3, 1), (1, 1, 1)])
def test_wrong_rank(shape):
    with pytest.raises(rv.DimensionMismatchError, match="2-D"):
        rv.DotProductAttention().compute(np.ones(shape, np.float32), X, X)


def test_dimension_mismatch_messages():
    attn = rv.DotProductAttention()
    with pytest.raises(rv.DimensionMismatchError, match="key has 4 columns, query has 3") as info:
        attn.compute(X, np.ones((5, 4), np.float32), np.ones((5, 2), np.float32))
    assert (info.value.expected, info.value.actual) == (3, 4)
    with pytest.raises(rv.DimensionMismatchError, match="value has 2 rows, key has 4"):
        attn.compute(X, X, np.ones((2, 3), np.float32))


def test_mask_errors():
    attn = rv.DotProductAttention()
    with pytest.raises(rv.DimensionMismatchError, match="mask"):
        attn.compute(X, X, X, mask=np.ones((4, 5), bool))
    with pytest.raises(rv.DimensionMismatchError, match="mask"):
        attn.compute(X, X, X, mask=np.ones((4,), bool))
    with pytest.raises(rv.InvalidInputError, match="astype"):
        attn.compute(X, X, X, mask=np.ones((4, 4), np.int64))
    with pytest.raises(rv.InvalidInputError):
        attn.compute(X, X, X, mask="upper")


def test_huge_weights_rejected_before_allocating():
    q = np.ones((400_000, 1), np.float32)
    with pytest.raises((rv.InvalidInputError, MemoryError), match="need_weights=False"):
        rv.DotProductAttention().compute(q, q, q)


def test_keyword_types():
    with pytest.raises(TypeError):
        rv.DotProductAttention().compute(X, X, X, causal="yes")
    with pytest.raises(TypeError):
        rv.DotProductAttention().compute(X, X, X, 1)


def test_error_does_not_corrupt_later_calls():
    attn = rv.DotProductAttention()
    good = attn.compute(X, X, X).values.copy()
    for bad in (None, np.ones((2, 2)), "x"):
        with pytest.raises(rv.InvalidInputError):
            attn.compute(X, bad, X)
    np.testing.assert_array_equal(attn.compute(X, X, X).values, good)


@settings(max_examples=60, deadline=None)
@given(
    lq=st.integers(0, 6),
    lk=st.integers(0, 6),
    d=st.integers(0, 5),
    dk=st.integers(0, 5),
    dv=st.integers(0, 4),
    vrows=st.integers(0, 6),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.float16, np.bool_]),
    fill=st.sampled_from([0.5, np.nan, np.inf, -np.inf, 1e30]),
)
def test_arbitrary_shapes_never_crash(lq, lk, d, dk, dv, vrows, dtype, fill):
    rng = np.random.default_rng(lq * 1000 + lk * 100 + d)
    q = rng.standard_normal((lq, d)).astype(dtype)
    k = rng.standard_normal((lk, dk)).astype(dtype)
    v = rng.standard_normal((vrows, dv)).astype(dtype)
    if q.size and np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):  # 1e30 becomes inf in float16, as intended
            q.flat[0] = fill
    try:
        out = rv.DotProductAttention().compute(q, k, v)
    except rv.DimensionMismatchError:
        assert dk != d or vrows != lk
        return
    assert dk == d and vrows == lk
    assert out.values.shape == (lq, dv) and out.weights.shape == (lq, lk)

"""Array inputs from other libraries (docs/contract.md §9): torch tensors and other DLPack
producers on the CPU are read in place; a tensor that requires grad is read as if detached; one
on another device is refused with a message that says to move it to the CPU."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import ruvector as rv
from ruvector import InvalidInputError

torch = pytest.importorskip("torch")


def _numpy_peak_bytes(fn) -> int:
    """Peak bytes NumPy allocated while fn ran (NumPy reports its buffers to tracemalloc; the
    C++ outputs are not counted, so a conversion copy is what shows)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_float32_tensor_is_read_without_a_copy(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.standard_normal((4096, 1024), dtype=np.float32))  # 16 MB
    attn = rv.HierarchicalAttention()
    expected = attn.compute([x.numpy()]).values
    assert np.array_equal(attn.compute([x]).values, expected)
    in_place = _numpy_peak_bytes(lambda: attn.compute([x]))
    copied = _numpy_peak_bytes(lambda: attn.compute([x.double()]))  # float64: converted once
    assert copied >= x.numel() * 4, "the float64 conversion should show as a copy"
    assert in_place < x.numel() * 4 // 8, f"a float32 tensor was copied ({in_place} bytes)"


@pytest.mark.parametrize("shape", [(5, 8), (33, 16)])
def test_tensors_give_the_numbers_of_their_arrays(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    mask = rng.random((shape[0], shape[0])) > 0.3
    attn = rv.DotProductAttention()
    expected = attn.compute(q, k, v, mask=mask)
    got = attn.compute(*(torch.from_numpy(a) for a in (q, k, v)), mask=torch.from_numpy(mask))
    np.testing.assert_array_equal(got.values, expected.values)
    np.testing.assert_array_equal(got.weights, expected.weights)
    # non-contiguous (a transposed view) and float64 tensors are converted once
    got = attn.compute(torch.from_numpy(q.T.copy()).T, torch.from_numpy(k).double(), torch.from_numpy(v))
    np.testing.assert_allclose(got.values, attn.compute(q, k, v).values, rtol=1e-6, atol=1e-6)


def test_requires_grad_tensor_is_read_as_detached(rng: np.random.Generator) -> None:
    x = rng.standard_normal((12, 8), dtype=np.float32)
    t = torch.tensor(x, requires_grad=True)
    times = torch.arange(12, dtype=torch.float64, requires_grad=True)
    attn = rv.TemporalAttention(decay_rate=0.1)
    np.testing.assert_array_equal(attn.compute(t, times).values, attn.compute(x, np.arange(12.0)).values)
    assert t.grad is None and t.requires_grad


class _OnAnotherDevice:
    """A DLPack producer that says it lives on a CUDA device (kDLCUDA = 2)."""

    device = "cuda:0"

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)

    def __dlpack__(self, **kwargs: object) -> object:
        raise AssertionError("must not be exported")


def test_tensor_on_another_device_is_refused() -> None:
    x = np.ones((3, 4), np.float32)
    with pytest.raises(InvalidInputError, match=r"key is on cuda:0.*CPU"):
        rv.DotProductAttention().compute(x, _OnAnotherDevice(), x)
    meta = torch.empty((3, 4), device="meta")
    with pytest.raises(InvalidInputError, match="query"):
        rv.DotProductAttention().compute(meta, x, x)


def test_batches_of_tensors_give_the_numbers_of_their_arrays(rng: np.random.Generator) -> None:
    """Stacked [B, L, E] tensors and a [B, S] key padding tensor (one row per item), grad
    tensors included, give what their arrays give."""
    q = rng.standard_normal((3, 6, 8), dtype=np.float32)
    padding = rng.random((3, 6)) > 0.6
    layer = rv.MultiHeadAttention({"num_heads": 2}, embed_dim=8)
    layer.set_weights({k: rng.standard_normal(w.shape).astype(np.float32) for k, w in layer.get_weights().items()})
    expected = layer.compute_batch(q, q, q, key_padding_mask=padding)
    t = torch.from_numpy(q).requires_grad_(True)
    got = layer.compute_batch(t, t, t, key_padding_mask=torch.from_numpy(padding))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g.values, e.values)
        np.testing.assert_array_equal(g.weights, e.weights)

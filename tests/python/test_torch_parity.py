"""Parity with torch.nn.functional.scaled_dot_product_attention (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import randn

import ruvector as rv

torch = pytest.importorskip("torch")
F = torch.nn.functional


def sdpa(q, k, v, **kwargs):
    with torch.no_grad():
        t = [torch.from_numpy(x)[None] for x in (q, k, v)]
        return F.scaled_dot_product_attention(*t, **kwargs)[0].numpy()


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), [(1, 1, 4, 4), (17, 33, 16, 8), (128, 300, 64, 64), (9, 3, 8, 5)])
def test_plain_and_causal(backend, rng, lq, lk, d, dv):
    q, k, v = randn(rng, lq, d), randn(rng, lk, d), randn(rng, lk, dv)
    attn = rv.DotProductAttention()
    np.testing.assert_allclose(attn.compute(q, k, v).values, sdpa(q, k, v), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        attn.compute(q, k, v, causal=True, need_weights=False).values,
        sdpa(q, k, v, is_causal=True),
        rtol=1e-4,
        atol=1e-5,
    )


def test_masks_and_scale(backend, rng):
    q, k, v = randn(rng, 40, 32), randn(rng, 70, 32), randn(rng, 70, 16)
    bool_mask = rng.random((40, 70)) > 0.4
    bool_mask[:, 0] = True  # torch gives NaN for fully masked rows; keep one key
    add_mask = rng.standard_normal((40, 70)).astype(np.float32)
    attn = rv.DotProductAttention({"scale": 0.2})
    np.testing.assert_allclose(
        attn.compute(q, k, v, mask=bool_mask).values,
        sdpa(q, k, v, attn_mask=torch.from_numpy(bool_mask), scale=0.2),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        attn.compute(q, k, v, mask=add_mask).values,
        sdpa(q, k, v, attn_mask=torch.from_numpy(add_mask), scale=0.2),
        rtol=1e-4,
        atol=1e-5,
    )

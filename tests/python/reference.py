"""Plain NumPy float64 references, written out so that they share nothing with ruvector."""

from __future__ import annotations

import numpy as np


def softmax_rows(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over each row's allowed entries; a row with none allowed gives zeros."""
    s = np.where(allowed, scores, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(allowed, np.exp(s - row_max), 0.0)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    # NaN scores propagate through the whole row, as IEEE arithmetic (and NumPy/PyTorch) do
    nan_rows = np.isnan(np.where(allowed, scores, 0.0)).any(axis=-1)
    weights[nan_rows] = np.nan
    return weights


def dot_product_attention(q, k, v, *, scale=None, mask=None, causal=False):
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1]) if q.shape[-1] > 0 else 1.0
    scores = scale * (q @ k.T)
    allowed = np.ones(scores.shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            allowed &= mask
        else:
            scores = scores + mask.astype(np.float64)
            allowed &= np.isfinite(scores) | (scores > 0)
    if causal:
        allowed &= np.tri(q.shape[0], k.shape[0], dtype=bool)
    weights = softmax_rows(scores, allowed)
    return weights @ v, weights

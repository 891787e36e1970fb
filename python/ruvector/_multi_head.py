"""MultiHeadAttention: the native layer plus async and batch calls (SPEC §4, §5)."""

from __future__ import annotations

from . import _native
from ._mechanisms import QueryKeyValueBatchMixin


class MultiHeadAttention(QueryKeyValueBatchMixin, _native.MultiHeadAttention):
    """torch.nn.MultiheadAttention's layer (batch_first, one sequence per call): in-projections,
    per-head scaled dot-product attention, out-projection; weights under torch's state_dict
    names. Masks: True = may attend."""


__all__ = ["MultiHeadAttention"]

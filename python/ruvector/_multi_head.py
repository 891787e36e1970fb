"""MultiHeadAttention: the native layer plus async and batch calls (docs/contract.md §4, §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _native
from ._base import WeightedMechanism
from ._mechanisms import QUERY_KEY_VALUE_BATCH_DOC, QUERY_KEY_VALUE_COLUMNS

if TYPE_CHECKING:  # what the held native object gives (see _mechanisms.py)
    _MultiHeadAttention = _native.MultiHeadAttention
else:
    _MultiHeadAttention = object


class MultiHeadAttention(
    WeightedMechanism,
    _MultiHeadAttention,
    native=_native.MultiHeadAttention,
    columns=QUERY_KEY_VALUE_COLUMNS,
    batch_doc=QUERY_KEY_VALUE_BATCH_DOC,
):
    """torch.nn.MultiheadAttention's layer (batch_first, one sequence per call): in-projections,
    per-head scaled dot-product attention, out-projection; weights under torch's state_dict
    names. Masks: True = may attend."""

    _options = ("embed_dim", "kdim", "vdim")  # save/load (ruvector/_io.py)


__all__ = ["MultiHeadAttention"]

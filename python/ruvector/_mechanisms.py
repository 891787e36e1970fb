"""DotProductAttention (docs/contract.md §4), and the (queries, keys, values) columns of compute_batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _native
from ._base import Column, Mechanism
from ._batch import BatchConfig  # noqa: F401  (its home until this module held only mechanisms; old pickles)

# compute_batch(queries, keys, values): [B, L, D] arrays or sequences of 2-D arrays.
QUERY_KEY_VALUE_COLUMNS = (Column("queries"), Column("keys"), Column("values"))
QUERY_KEY_VALUE_BATCH_DOC = "compute over B items: [B, L, D] arrays or sequences of 2-D arrays (ragged allowed)."

# Type checkers see the native class's constructor, methods and properties, which the public
# class exposes from the native object it holds (ruvector/_base.py); at run time it is no base.
if TYPE_CHECKING:
    _DotProductAttention = _native.DotProductAttention
else:
    _DotProductAttention = object


class DotProductAttention(
    Mechanism,
    _DotProductAttention,
    native=_native.DotProductAttention,
    columns=QUERY_KEY_VALUE_COLUMNS,
    batch_doc=QUERY_KEY_VALUE_BATCH_DOC,
):
    """Scaled dot-product attention: softmax(scale·Q·Kᵀ + mask)·V (docs/contract.md §4)."""


__all__ = ["DotProductAttention"]

"""HierarchicalAttention: the native compute plus async and batch calls (docs/contract.md §4, §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from . import _native
from ._base import Column, Mechanism

if TYPE_CHECKING:  # what the held native object gives (see _mechanisms.py)
    _HierarchicalAttention = _native.HierarchicalAttention
else:
    _HierarchicalAttention = object


class HierarchicalAttention(
    Mechanism,
    _HierarchicalAttention,
    native=_native.HierarchicalAttention,
    columns=(Column("levels_list"), Column("level_weights_list", "Sequence[Any] | None", optional=True)),
    batch_doc="compute over B items: each a list of [N, D] arrays or an [L, N, D] array (a "
    "[B, L, N, D] array works too), with one level_weights vector per item (or None).",
):
    """Parameter-free hierarchical attention pooling (docs/contract.md §4).

    Within level l: ``αₗ = softmax(scale·Xₗ·uₗ)``, ``sₗ = αₗᵀXₗ`` with ``uₗ`` = ``query`` or the
    level's mean row; across levels ``β`` = normalised ``level_weights`` or
    ``softmax(scale·S·ū)``; values ``[1, D] = βᵀS``.
    """

    # compute_batch(..., query=q): one [D] vector for all items, or a [B, D] array / a list
    # of [D] vectors, one per item.
    _batch_item_ndim: ClassVar[Mapping[str, int]] = {"query": 1}


__all__ = ["HierarchicalAttention"]

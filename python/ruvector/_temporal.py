"""TemporalAttention: the native compute plus async and batch calls (docs/contract.md §4, §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _native
from ._base import Column, Mechanism

if TYPE_CHECKING:  # what the held native object gives (see _mechanisms.py)
    _TemporalAttention = _native.TemporalAttention
else:
    _TemporalAttention = object


class TemporalAttention(
    Mechanism,
    _TemporalAttention,
    native=_native.TemporalAttention,
    columns=(Column("sequences"), Column("timestamps_list", "Sequence[Any] | None", optional=True)),
    batch_doc="compute over B sequences: a [B, T, D] array or a list of [T, D] arrays (ragged T "
    "allowed), with one timestamp vector per sequence (or None: tᵢ = i everywhere).",
):
    """Self-attention over a sequence of events with time decay (docs/contract.md §4).

    Scores ``scale·(xᵢ·xⱼ) − λ·|tᵢ − tⱼ|``; with ``causal`` event i attends to j only where
    ``tⱼ <= tᵢ`` (by time, so unsorted timestamps work); ``window`` drops ``|tᵢ − tⱼ| > window``;
    i always attends to itself. Without timestamps ``tᵢ = i``.
    """

    _options = ("causal", "decay_rate", "half_life", "window")  # save/load (ruvector/_io.py)


__all__ = ["TemporalAttention"]

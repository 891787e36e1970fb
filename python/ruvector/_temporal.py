"""TemporalAttention: the native compute plus async and batch calls (SPEC §4, §5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _native
from ._async import AsyncBatchMixin, ProgressCallback
from ._mechanisms import BatchConfig


class TemporalAttention(AsyncBatchMixin, _native.TemporalAttention):
    """Self-attention over a sequence of events with time decay (SPEC §4).

    Scores ``scale·(xᵢ·xⱼ) − λ·|tᵢ − tⱼ|``; with ``causal`` event i attends to j only where
    ``tⱼ <= tᵢ`` (by time, so unsorted timestamps work); ``window`` drops ``|tᵢ − tⱼ| > window``;
    i always attends to itself. Without timestamps ``tᵢ = i``.
    """

    def compute_batch(
        self,
        sequences: Sequence[Any],
        timestamps_list: Sequence[Any] | None = None,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """compute over B sequences: a [B, T, D] array or a list of [T, D] arrays (ragged T
        allowed), with one timestamp vector per sequence (or None: tᵢ = i everywhere)."""
        columns = [("sequences", sequences, False), ("timestamps_list", timestamps_list, True)]
        return self._run_batch(columns, kwargs, batch_config, progress)

    async def compute_batch_async(
        self,
        sequences: Sequence[Any],
        timestamps_list: Sequence[Any] | None = None,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """Awaitable form of compute_batch."""
        columns = [("sequences", sequences, False), ("timestamps_list", timestamps_list, True)]
        return await self._run_batch_async(columns, kwargs, batch_config, progress)


__all__ = ["TemporalAttention"]

"""HierarchicalAttention: the native compute plus async and batch calls (SPEC §4, §5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from . import _native
from ._async import AsyncBatchMixin, ProgressCallback
from ._mechanisms import BatchConfig


class HierarchicalAttention(AsyncBatchMixin, _native.HierarchicalAttention):
    """Parameter-free hierarchical attention pooling (SPEC §4).

    Within level l: ``αₗ = softmax(scale·Xₗ·uₗ)``, ``sₗ = αₗᵀXₗ`` with ``uₗ`` = ``query`` or the
    level's mean row; across levels ``β`` = normalised ``level_weights`` or
    ``softmax(scale·S·ū)``; values ``[1, D] = βᵀS``.
    """

    # compute_batch(..., query=q): one [D] vector for all items, or a [B, D] array / a list
    # of [D] vectors, one per item.
    _batch_item_ndim: ClassVar[Mapping[str, int]] = {"query": 1}

    def compute_batch(
        self,
        levels_list: Sequence[Any],
        level_weights_list: Sequence[Any] | None = None,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """compute over B items: each a list of [N, D] arrays or an [L, N, D] array (a
        [B, L, N, D] array works too), with one level_weights vector per item (or None)."""
        columns = [("levels_list", levels_list, False), ("level_weights_list", level_weights_list, True)]
        return self._run_batch(columns, kwargs, batch_config, progress)

    async def compute_batch_async(
        self,
        levels_list: Sequence[Any],
        level_weights_list: Sequence[Any] | None = None,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """Awaitable form of compute_batch."""
        columns = [("levels_list", levels_list, False), ("level_weights_list", level_weights_list, True)]
        return await self._run_batch_async(columns, kwargs, batch_config, progress)


__all__ = ["HierarchicalAttention"]

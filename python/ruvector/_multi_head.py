"""MultiHeadAttention: the native layer plus async and batch calls (SPEC §4, §5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _native
from ._async import AsyncBatchMixin, ProgressCallback

if TYPE_CHECKING:
    from ._mechanisms import BatchConfig


class MultiHeadAttention(AsyncBatchMixin, _native.MultiHeadAttention):
    """torch.nn.MultiheadAttention's layer (batch_first, one sequence per call): in-projections,
    per-head scaled dot-product attention, out-projection; weights under torch's state_dict
    names. Masks: True = may attend."""

    def compute_batch(
        self,
        queries: Sequence[Any],
        keys: Sequence[Any],
        values: Sequence[Any],
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """compute over B items: [B, L, D] arrays or sequences of 2-D arrays (ragged allowed)."""
        columns = [("queries", queries, False), ("keys", keys, False), ("values", values, False)]
        return self._run_batch(columns, kwargs, batch_config, progress)

    async def compute_batch_async(
        self,
        queries: Sequence[Any],
        keys: Sequence[Any],
        values: Sequence[Any],
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """Awaitable form of compute_batch."""
        columns = [("queries", queries, False), ("keys", keys, False), ("values", values, False)]
        return await self._run_batch_async(columns, kwargs, batch_config, progress)


__all__ = ["MultiHeadAttention"]

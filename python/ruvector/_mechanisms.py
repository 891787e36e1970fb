"""The public mechanism classes: the native compute plus async and batch calls (SPEC §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _native
from ._async import AsyncBatchMixin, ProgressCallback
from ._errors import InvalidConfigError


@dataclass(frozen=True)
class BatchConfig:
    """How compute_batch splits its work: chunks of ``max_batch_size`` items, at most
    ``num_threads`` pool workers (None: the whole pool), optional progress display."""

    max_batch_size: int = 1024
    num_threads: int | None = None
    enable_progress: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int):
            raise InvalidConfigError(f"max_batch_size must be an int >= 1, got {self.max_batch_size!r}")
        if self.max_batch_size < 1:
            raise InvalidConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.num_threads is not None and (
            isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise InvalidConfigError(f"num_threads must be None or an int >= 1, got {self.num_threads!r}")


class DotProductAttention(AsyncBatchMixin, _native.DotProductAttention):
    """Scaled dot-product attention: softmax(scale·Q·Kᵀ + mask)·V (SPEC §4)."""

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


__all__ = ["BatchConfig", "DotProductAttention"]

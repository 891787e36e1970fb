"""The public mechanism classes: the native compute plus async and batch calls (SPEC §5)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
        # frozen dataclass: normalise through object.__setattr__ (NumPy integers become ints)
        object.__setattr__(self, "max_batch_size", _positive_int("max_batch_size", self.max_batch_size))
        if self.num_threads is not None:
            object.__setattr__(self, "num_threads", _positive_int("num_threads", self.num_threads))
        if not isinstance(self.enable_progress, (bool, np.bool_)):
            raise InvalidConfigError(f"enable_progress must be True or False, got {self.enable_progress!r}")
        object.__setattr__(self, "enable_progress", bool(self.enable_progress))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise InvalidConfigError(f"{name} must be an integer >= 1, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InvalidConfigError(f"{name} must be an integer >= 1, got {value!r}") from None
    if number < 1:
        raise InvalidConfigError(f"{name} must be >= 1, got {number}")
    return number


class QueryKeyValueBatchMixin(AsyncBatchMixin):
    """compute_batch / compute_batch_async for mechanisms called as (query, key, value)."""

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


class DotProductAttention(QueryKeyValueBatchMixin, _native.DotProductAttention):
    """Scaled dot-product attention: softmax(scale·Q·Kᵀ + mask)·V (SPEC §4)."""


__all__ = ["BatchConfig", "DotProductAttention"]

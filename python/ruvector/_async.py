"""Async and batch calls shared by every mechanism (SPEC §5).

Each native mechanism has ``_prepare(...)``, which converts and validates one call's
arguments (with the GIL held) and returns a job. Batches prepare every item first, so a bad
item raises before any work starts, then run chunks of jobs on the C++ pool with the GIL
released. Async calls hand jobs to the same pool and resolve an asyncio future from the
worker through ``loop.call_soon_threadsafe``: the event loop is never blocked, and nested
work (a batch inside an async call) shares the one pool.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _native
from ._errors import DimensionMismatchError, InvalidInputError, RuVectorError

ProgressCallback = Callable[[int, int], object]


def _resolve(fut: asyncio.Future[Any], results: Any, error: BaseException | None) -> None:
    if fut.cancelled():  # the awaiting task went away; the work finished harmlessly
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(results)


async def run_jobs_async(jobs: list[Any], max_workers: int = 0) -> list[Any]:
    """Runs prepared jobs on the pool; awaiting never blocks the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[Any]] = loop.create_future()

    def done(results: Any, error: BaseException | None) -> None:  # on a pool thread, GIL held
        loop.call_soon_threadsafe(_resolve, fut, results, error)

    _native._submit_jobs(jobs, max_workers, done)
    return await fut


def _item_error(index: int, error: RuVectorError) -> RuVectorError:
    """The same exception type, its message naming the batch item."""
    message = f"item {index}: {error}"
    if isinstance(error, DimensionMismatchError):
        return DimensionMismatchError(message, error.expected, error.actual)
    return type(error)(message)


def _length(name: str, column: Any) -> int:
    if isinstance(column, (str, bytes, dict)) or not hasattr(column, "__len__"):
        raise InvalidInputError(
            f"{name} must be a sequence of arrays or one stacked array, got {type(column).__name__}"
        )
    return len(column)


def _is_per_item(value: Any) -> bool:
    """A keyword value given once per item: a 3-D array or a list/tuple of arrays."""
    if isinstance(value, np.ndarray):
        return value.ndim == 3
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], np.ndarray)


class _Progress:
    """progress(done, total): the caller's callable, a tqdm bar, a stderr line, or nothing."""

    def __init__(self, enabled: bool, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._bar: Any = None
        self._stderr = False
        if callback is None and enabled:
            try:
                from tqdm import tqdm  # optional

                self._bar = tqdm(total=total, unit="item")
            except ImportError:
                self._stderr = True
        self._total = total

    def __call__(self, done: int) -> None:
        if self._callback is not None:
            self._callback(done, self._total)
        elif self._bar is not None:
            self._bar.update(done - self._bar.n)
        elif self._stderr:
            end = "\n" if done >= self._total else ""
            print(f"\rruvector batch: {done}/{self._total}", end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class AsyncBatchMixin:
    """compute_async / compute_batch / compute_batch_async on top of native ``_prepare``."""

    _prepare: Callable[..., Any]

    def _prepare_batch(
        self, columns: Sequence[tuple[str, Any, bool]], kwargs: dict[str, Any]
    ) -> list[Any]:
        """columns: (name, sequence or None, optional). Every item is validated here."""
        lengths = {name: _length(name, col) for name, col, _ in columns if col is not None}
        if not lengths:
            raise InvalidInputError("compute_batch needs at least one sequence of inputs")
        total = next(iter(lengths.values()))
        if any(n != total for n in lengths.values()):
            raise InvalidInputError(
                "batch inputs have different lengths "
                + ", ".join(f"{k}={v}" for k, v in lengths.items())
                + ": give one entry per item in each"
            )
        per_item = {k: v for k, v in kwargs.items() if _is_per_item(v)}
        for key, value in per_item.items():
            if len(value) != total:
                raise InvalidInputError(f"{key} has {len(value)} entries for {total} items: give one per item")
        shared = {k: v for k, v in kwargs.items() if k not in per_item}
        jobs = []
        for i in range(total):
            args = [None if col is None else col[i] for _, col, _ in columns]
            item_kwargs = {**shared, **{k: v[i] for k, v in per_item.items()}}
            try:
                jobs.append(self._prepare(*args, **item_kwargs))
            except RuVectorError as e:
                raise _item_error(i, e) from e
        return jobs

    def _run_batch(
        self,
        columns: Sequence[tuple[str, Any, bool]],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> list[Any]:
        from ._mechanisms import BatchConfig

        config = _batch_config(batch_config, BatchConfig)
        jobs = self._prepare_batch(columns, kwargs)
        reporter = _Progress(config.enable_progress, progress, len(jobs))
        results: list[Any] = []
        try:
            for start in range(0, len(jobs), config.max_batch_size):
                chunk = jobs[start : start + config.max_batch_size]
                results.extend(_native._run_jobs(chunk, config.num_threads or 0))
                reporter(len(results))
        finally:
            reporter.close()
        return results

    async def _run_batch_async(
        self,
        columns: Sequence[tuple[str, Any, bool]],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> list[Any]:
        from ._mechanisms import BatchConfig

        config = _batch_config(batch_config, BatchConfig)
        jobs = self._prepare_batch(columns, kwargs)
        reporter = _Progress(config.enable_progress, progress, len(jobs))
        results: list[Any] = []
        try:
            for start in range(0, len(jobs), config.max_batch_size):
                chunk = jobs[start : start + config.max_batch_size]
                results.extend(await run_jobs_async(chunk, config.num_threads or 0))
                reporter(len(results))  # on the event loop's thread, which is the caller's
        finally:
            reporter.close()
        return results

    async def compute_async(self, *args: Any, **kwargs: Any) -> Any:
        """Awaitable form of ``compute`` (same arguments); runs on the pool, GIL released."""
        job = self._prepare(*args, **kwargs)
        return (await run_jobs_async([job]))[0]


def _batch_config(value: Any, cls: type) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise InvalidInputError(f"batch_config must be a BatchConfig, a dict or None, got {type(value).__name__}")

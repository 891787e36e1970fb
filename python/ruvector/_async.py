"""Async and batch calls shared by every mechanism (SPEC §5).

Each native mechanism has ``_prepare(...)``, which converts and validates one call's
arguments (with the GIL held) and returns a job. Batches prepare every item first, so a bad
item raises before any work starts, then run chunks of jobs on the C++ pool with the GIL
released. Async calls hand jobs to the same pool; a finished call reaches its event loop
through the loop's completion channel (a socket the loop watches, written by the worker
without the GIL; the loop's thread then resolves the future), or, on loops that cannot watch
a socket, through ``loop.call_soon_threadsafe`` from the worker. The event loop is never
blocked, and nested work (a batch inside an async call) shares the one pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from . import _native
from ._errors import DimensionMismatchError, InvalidConfigError, InvalidInputError, RuVectorError

ProgressCallback = Callable[[int, int], object]


def _resolve(fut: asyncio.Future[Any], results: Any, error: BaseException | None) -> None:
    if fut.done():  # the awaiting task was cancelled; the work finished harmlessly
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(results)


_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_channels_lock = threading.Lock()


# (weak reference to the loop, its channel) of the latest call: the usual case, without a lookup.
_last: tuple[Callable[[], Any], Any] = (lambda: None, None)


def _channel_of(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's completion channel (POSIX selector loops), made on first use: pool workers
    queue finished calls and write a byte to a socket the loop watches, without the GIL; the
    loop's reader resolves the futures on its own thread. None where the loop cannot watch a
    socket (e.g. Windows' proactor loop): completions then go through call_soon_threadsafe."""
    global _last
    last_loop, last_channel = _last
    if last_loop() is loop:
        return last_channel
    try:
        channel = _channels[loop]
        _last = (weakref.ref(loop), channel)
        return channel
    except KeyError:
        pass
    except TypeError:  # a loop type without weak references: no cache, no channel
        return None
    with _channels_lock:
        if loop not in _channels:
            channel = None
            if hasattr(_native, "_CompletionChannel"):
                try:
                    channel = _native._CompletionChannel()
                    loop.add_reader(channel.fileno(), channel.drain)
                except (NotImplementedError, OSError, RuVectorError):
                    channel = None
                else:
                    weakref.finalize(loop, channel.close_reader)
            _channels[loop] = channel
        channel = _channels[loop]
        _last = (weakref.ref(loop), channel)
        return channel


def _submit(
    loop: asyncio.AbstractEventLoop, jobs: list[Any], max_workers: int
) -> tuple[asyncio.Future[list[Any]], Any]:
    """Hands prepared jobs to the pool; returns the future of their outputs and the ticket."""
    fut: asyncio.Future[list[Any]] = loop.create_future()
    channel = _channel_of(loop)
    if channel is not None:
        return fut, channel.submit(jobs, max_workers, fut)

    def done(results: Any, error: BaseException | None) -> None:  # on a pool thread, GIL held
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits this result
            loop.call_soon_threadsafe(_resolve, fut, results, error)

    return fut, _native._submit_jobs(jobs, max_workers, done)


async def run_jobs_async(jobs: list[Any], max_workers: int = 0) -> list[Any]:
    """Runs prepared jobs on the pool; awaiting never blocks the event loop.

    Cancelling the awaiting task is safe: the items not yet started are skipped, the ones
    running finish on the pool (their inputs stay alive until then) and the result is dropped.
    """
    fut, ticket = _submit(asyncio.get_running_loop(), jobs, max_workers)
    try:
        return await fut
    except asyncio.CancelledError:
        ticket.cancel()
        raise


def _item_error(index: int, error: Exception) -> Exception:
    """The same exception type, its message naming the batch item."""
    message = f"item {index}: {error}"
    if isinstance(error, DimensionMismatchError):
        return DimensionMismatchError(message, error.expected, error.actual)
    try:
        return type(error)(message)
    except Exception:  # an exception class with another constructor: keep the original
        return error


def _argument_error(error: TypeError, method: str, kwargs: Mapping[str, Any]) -> TypeError:
    """pybind11's "incompatible function arguments" error, retold for the public method: the
    accepted keywords and the ones given, without the private function's name or a dump of
    every input array."""
    text = str(error)
    if "incompatible function arguments" not in text:
        return error
    accepted = ""
    for line in text.splitlines():
        if line.strip().startswith("1. ("):  # "1. (self: object, query: object, ..., *, mask: object = None, ...)"
            params = line.split("(", 1)[1].rsplit(")", 1)[0]
            accepted = ", ".join(p.strip() for p in params.split(",")[1:])  # without self
            break
    given = ", ".join(f"{k}={type(v).__name__}" for k, v in kwargs.items()) or "none"
    return TypeError(
        f"{method}: unexpected argument or argument type (keywords given: {given}); it accepts ({accepted})"
    )


def _length(name: str, column: Any) -> int:
    """Number of items in one batch column: a stacked array or a sequence of arrays."""
    if isinstance(column, np.ndarray):
        if column.ndim < 2:
            raise InvalidInputError(
                f"{name} must be one stacked array (a leading batch axis over the items) or a "
                f"sequence of arrays, got a {column.ndim}-D array"
            )
        return int(column.shape[0])
    if isinstance(column, (str, bytes, dict)) or not hasattr(column, "__len__") or not hasattr(column, "__getitem__"):
        raise InvalidInputError(
            f"{name} must be a sequence of arrays (a list or tuple) or one stacked array, got {type(column).__name__}"
        )
    return len(column)


def _is_per_item(value: Any, item_ndim: int | None) -> bool:
    """A keyword array given once per item rather than shared by all items: an array with a
    leading batch axis, i.e. ``item_ndim + 1`` dimensions (``item_ndim`` defaults to 2), or a
    list/tuple whose entries are each ``None`` (nothing for that item, e.g. no mask) or one
    item's array: an ndarray (of rank ``item_ndim`` when the mechanism declares it) or nested
    lists of that rank. A list of ``None`` only is per item too: no shared value looks like that."""
    ndim = 2 if item_ndim is None else item_ndim
    if isinstance(value, np.ndarray):
        return value.ndim == ndim + 1
    if not isinstance(value, (list, tuple)) or not value:
        return False
    for entry in value:
        if entry is None:
            continue
        if isinstance(entry, np.ndarray):
            if item_ndim is not None and entry.ndim != item_ndim:
                return False
            continue
        if not isinstance(entry, (list, tuple)):
            return False
        try:
            if np.asarray(entry).ndim != ndim:
                return False
        except ValueError:  # ragged: not one item's array
            return False
    return True


class _Progress:
    """progress(done, total): the caller's callable, a tqdm bar, a stderr line, or nothing.
    Always called on the caller's thread (the event loop's thread for the async forms)."""

    def __init__(self, enabled: bool, callback: ProgressCallback | None, total: int) -> None:
        if callback is not None and not callable(callback):
            raise InvalidInputError(
                f"progress must be a callable progress(done, total) or None, got {type(callback).__name__}"
            )
        self._callback = callback
        self._bar: Any = None
        self._stderr = False
        if callback is None and enabled and total > 0:
            try:
                tqdm = importlib.import_module("tqdm").tqdm  # optional
            except ImportError:
                self._stderr = True
            else:
                self._bar = tqdm(total=total, unit="item", desc="ruvector batch")
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


class _BatchRun:
    """One compute_batch: the prepared jobs in chunks of max_batch_size, their outputs, and the
    progress report after each chunk (closed on exit, also on errors)."""

    def __init__(
        self,
        mechanism: AsyncBatchMixin,
        columns: Sequence[tuple[str, Any, bool]],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> None:
        config = _batch_config(batch_config)  # a bad config is reported before any item
        self.jobs = jobs = mechanism._prepare_batch(columns, kwargs)
        self.chunk_size: int = config.max_batch_size
        self.max_workers: int = config.num_threads or 0
        self.results: list[Any] = []
        self._reporter = _Progress(config.enable_progress, progress, len(jobs))

    def chunks(self) -> Iterator[list[Any]]:
        for start in range(0, len(self.jobs), self.chunk_size):
            yield self.jobs[start : start + self.chunk_size]

    def done(self, outputs: list[Any]) -> None:
        self.results.extend(outputs)
        self._reporter(len(self.results))

    def __enter__(self) -> _BatchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reporter.close()


class AsyncBatchMixin:
    """compute_async / compute_batch / compute_batch_async on top of native ``_prepare``.

    A mechanism whose keyword arrays are not 2-D per item lists their item rank in
    ``_batch_item_ndim`` (e.g. ``{"query": 1}``), so that a per-item form (one more
    dimension, or a list of such arrays) is told apart from one value shared by all items.
    """

    _prepare: Callable[..., Any]
    _batch_item_ndim: ClassVar[Mapping[str, int]] = {}

    def _prepare_batch(self, columns: Sequence[tuple[str, Any, bool]], kwargs: dict[str, Any]) -> list[Any]:
        """columns: (name, sequence or None, optional). Every item is validated here, before
        any work starts; an error names the item."""
        for name, col, optional in columns:
            if col is None and not optional:
                raise InvalidInputError(f"{name} is required: give a sequence of arrays or one stacked array")
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
        per_item = {k: v for k, v in kwargs.items() if _is_per_item(v, self._batch_item_ndim.get(k))}
        for key, value in per_item.items():
            if len(value) != total:
                raise InvalidInputError(f"{key} has {len(value)} entries for {total} items: give one per item")
        shared = {k: v for k, v in kwargs.items() if k not in per_item}
        stacked = getattr(self, "_prepare_stacked", None)
        if (
            stacked is not None
            and total > 0  # an empty batch is [] whatever else was passed, as item by item
            and not per_item
            and all(isinstance(col, np.ndarray) and col.ndim == 3 for _, col, _ in columns)
        ):
            # Stacked [B, L, D] arrays: converted and validated once (every item has the same
            # shapes), the jobs made natively; an error is item 0's.
            try:
                return list(stacked(*(col for _, col, _ in columns), **shared))
            except TypeError as e:  # a bad or unknown keyword, shared by every item
                raise _argument_error(e, "compute_batch", kwargs) from None
            except RuVectorError as e:
                raise _item_error(0, e) from e
        # One tight loop per case (lengths are checked above): every µs of Python per item is
        # paid on the calling thread before the pool starts.
        prepare = self._prepare
        arg_columns = [itertools.repeat(None, total) if col is None else col for _, col, _ in columns]
        jobs: list[Any] = []
        append = jobs.append
        try:
            if per_item:
                for i, args in enumerate(zip(*arg_columns, strict=False)):
                    append(prepare(*args, **shared, **{k: v[i] for k, v in per_item.items()}))
            elif shared:
                for args in zip(*arg_columns, strict=False):
                    append(prepare(*args, **shared))
            else:
                for args in zip(*arg_columns, strict=False):
                    append(prepare(*args))
        except TypeError as e:
            raise _item_error(len(jobs), _argument_error(e, "compute_batch", kwargs)) from None
        except RuVectorError as e:
            raise _item_error(len(jobs), e) from e
        return jobs

    def _run_batch(
        self,
        columns: Sequence[tuple[str, Any, bool]],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> list[Any]:
        with _BatchRun(self, columns, kwargs, batch_config, progress) as run:
            for chunk in run.chunks():
                run.done(_native._run_jobs(chunk, run.max_workers))  # reported on the calling thread
        return run.results

    async def _run_batch_async(
        self,
        columns: Sequence[tuple[str, Any, bool]],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> list[Any]:
        with _BatchRun(self, columns, kwargs, batch_config, progress) as run:
            for chunk in run.chunks():
                run.done(await run_jobs_async(chunk, run.max_workers))  # on the loop's thread, the caller's
        return run.results

    async def compute_async(self, *args: Any, **kwargs: Any) -> Any:
        """Awaitable form of ``compute`` (same arguments); runs on the pool, GIL released.
        Errors (the same types as ``compute`` raises) surface when awaited."""
        loop = asyncio.get_running_loop()
        try:
            job = self._prepare(*args, **kwargs)
        except TypeError as e:
            raise _argument_error(e, "compute_async", kwargs) from None
        channel = _channel_of(loop)
        if channel is None:
            fut, ticket = _submit(loop, [job], 0)
            try:
                return (await fut)[0]
            except asyncio.CancelledError:
                ticket.cancel()
                raise
        one: asyncio.Future[Any] = loop.create_future()
        ticket = channel.submit_one(job, one)  # the worker computes; the loop's reader resolves `one`
        try:
            return await one
        except asyncio.CancelledError:
            ticket.cancel()
            raise


def _batch_config(value: Any) -> Any:
    from ._mechanisms import BatchConfig  # _mechanisms imports this module

    if value is None:
        return BatchConfig()
    if isinstance(value, BatchConfig):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"max_batch_size", "num_threads", "enable_progress"}
        if unknown:
            raise InvalidConfigError(
                f"unknown BatchConfig key(s) {sorted(unknown)}: use max_batch_size, num_threads, enable_progress"
            )
        return BatchConfig(**value)
    raise InvalidInputError(f"batch_config must be a BatchConfig, a dict or None, got {type(value).__name__}")

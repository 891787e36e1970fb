"""compute_batch and compute_batch_async of every mechanism: the columns of
inputs split into items, every item prepared (validated) before any work starts, then run in
chunks on the C++ pool (``_async.py``) with progress reported on the calling thread."""

from __future__ import annotations

import importlib
import itertools
import operator
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _async
from ._errors import DimensionMismatchError, InvalidConfigError, InvalidInputError, RuVectorError

ProgressCallback = Callable[[int, int], object]


@dataclass(frozen=True)
class BatchConfig:
    """How compute_batch splits its work: chunks of ``max_batch_size`` items, at most
    ``num_threads`` pool workers (None: the whole pool), optional progress display."""

    max_batch_size: int = 1024
    num_threads: int | None = None
    enable_progress: bool = False

    def __post_init__(self) -> None:
        # frozen dataclass: normalise through object.__setattr__ (NumPy integers become ints)
        object.__setattr__(self, "max_batch_size", _positive_int("max_batch_size", self.max_batch_size, 2**62))
        if self.num_threads is not None:
            object.__setattr__(self, "num_threads", _positive_int("num_threads", self.num_threads, 2**31 - 1))
        if not isinstance(self.enable_progress, (bool, np.bool_)):
            raise InvalidConfigError(f"enable_progress must be True or False, got {self.enable_progress!r}")
        object.__setattr__(self, "enable_progress", bool(self.enable_progress))


def _positive_int(name: str, value: Any, high: int) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise InvalidConfigError(f"{name} must be an integer >= 1, got {value!r}")
    try:
        number = operator.index(value)
    except (TypeError, ValueError, OverflowError):  # Ctrl-C and MemoryError pass through
        raise InvalidConfigError(f"{name} must be an integer >= 1, got {value!r}") from None
    if number < 1:
        raise InvalidConfigError(f"{name} must be >= 1, got {number}")
    if number > high:  # refused here, not later as a TypeError of the native call
        raise InvalidConfigError(f"{name} must be <= {high}, got {number}")
    return number


def _batch_config(value: Any) -> BatchConfig:
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


@dataclass(frozen=True)
class Column:
    """One positional input of compute_batch: one entry per item (a sequence, or an array
    with a leading batch axis), passed positionally to the mechanism's ``_prepare``."""

    name: str
    annotation: str = "Sequence[Any]"
    optional: bool = False  # None: nothing for every item (compute's default)
    shared: type | None = None  # one value of this type stands for every item

    def for_every_item(self, value: Any, first: Any) -> Any:
        """``value`` with one entry per item of the first column ``first``."""
        if self.shared is not None and isinstance(value, self.shared) and hasattr(first, "__len__"):
            return [value] * len(first)
        return value


def _item_error(index: int, error: Exception) -> Exception:
    """The same exception type, its message naming the batch item."""
    message = f"item {index}: {error}"
    if isinstance(error, DimensionMismatchError):
        return DimensionMismatchError(message, error.expected, error.actual)
    try:
        return type(error)(message)
    except Exception:  # an exception class with another constructor: keep the original
        return error


def argument_error(error: TypeError, method: str, kwargs: Mapping[str, Any]) -> TypeError:
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


class BatchRun:
    """One compute_batch: the columns' ``values`` and compute's ``kwargs`` prepared as jobs
    (all validated before any runs), run in chunks of max_batch_size, the progress reported
    after each chunk on the calling thread (the event loop's for the async form)."""

    def __init__(
        self,
        mechanism: Any,
        columns: Sequence[Column],
        values: Sequence[Any],
        kwargs: dict[str, Any],
        batch_config: Any,
        progress: ProgressCallback | None,
    ) -> None:
        config = _batch_config(batch_config)  # a bad config is reported before any item
        self.jobs = jobs = _prepare_batch(mechanism, columns, values, kwargs)
        self.chunk_size: int = config.max_batch_size
        self.max_workers: int = config.num_threads or 0
        self.results: list[Any] = []
        self._reporter = _Progress(config.enable_progress, progress, len(jobs))

    def run(self) -> list[Any]:
        try:
            for chunk in self._chunks():
                self._done(_async.run_jobs(chunk, self.max_workers))
        finally:
            self._reporter.close()
        return self.results

    async def run_async(self) -> list[Any]:
        try:
            for chunk in self._chunks():
                self._done(await _async.run_jobs_async(chunk, self.max_workers))
        finally:
            self._reporter.close()
        return self.results

    def _chunks(self) -> Iterator[list[Any]]:
        for start in range(0, len(self.jobs), self.chunk_size):
            yield self.jobs[start : start + self.chunk_size]

    def _done(self, outputs: list[Any]) -> None:
        self.results.extend(outputs)
        self._reporter(len(self.results))


def _array_view(value: Any) -> Any:
    """A CPU DLPack producer (a torch tensor, say) as the NumPy array viewing its memory, so a
    stacked ``[B, L, D]`` tensor takes the stacked path and a ``[B, S]`` mask counts as one per
    item, as their arrays would; a tensor that requires grad is viewed as if detached (as every
    array argument is read). Anything else, and a producer NumPy cannot view, is left as it is:
    the per-item conversion then reads or refuses it."""
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__") or not hasattr(value, "__dlpack_device__"):
        return value
    try:
        if value.__dlpack_device__()[0] != 1:  # not kDLCPU: the native conversion says to move it
            return value
        if getattr(value, "requires_grad", False) and hasattr(value, "detach"):
            value = value.detach()
        return np.from_dlpack(value)
    except Exception:  # a layout DLPack cannot export: converted item by item
        return value


def _prepare_batch(
    mechanism: Any, columns: Sequence[Column], values: Sequence[Any], kwargs: dict[str, Any]
) -> list[Any]:
    """One job per item of the columns' values, made by the mechanism's ``_prepare`` (or its
    ``_prepare_stacked`` for stacked arrays). Every item is validated here, before any work
    starts; an error names the item."""
    values = [_array_view(v) for v in values]
    kwargs = {k: _array_view(v) for k, v in kwargs.items()}
    given = [(c.name, c.for_every_item(v, values[0]), c.optional) for c, v in zip(columns, values, strict=True)]
    for name, col, optional in given:
        if col is None and not optional:
            raise InvalidInputError(f"{name} is required: give a sequence of arrays or one stacked array")
    lengths = {name: _length(name, col) for name, col, _ in given if col is not None}
    if not lengths:
        raise InvalidInputError("compute_batch needs at least one sequence of inputs")
    total = next(iter(lengths.values()))
    if any(n != total for n in lengths.values()):
        raise InvalidInputError(
            "batch inputs have different lengths "
            + ", ".join(f"{k}={v}" for k, v in lengths.items())
            + ": give one entry per item in each"
        )
    per_item = {k: v for k, v in kwargs.items() if _is_per_item(v, mechanism._batch_item_ndim.get(k))}
    for key, value in per_item.items():
        if len(value) != total:
            raise InvalidInputError(f"{key} has {len(value)} entries for {total} items: give one per item")
    shared = {k: v for k, v in kwargs.items() if k not in per_item}
    stacked = getattr(mechanism, "_prepare_stacked", None)
    if (
        stacked is not None
        and total > 0  # an empty batch is [] whatever else was passed, as item by item
        and not per_item
        and all(isinstance(col, np.ndarray) and col.ndim == 3 for _, col, _ in given)
    ):
        # Stacked [B, L, D] arrays: converted and validated once (every item has the same
        # shapes), the jobs made natively; an error is item 0's.
        try:
            return list(stacked(*(col for _, col, _ in given), **shared))
        except TypeError as e:  # a bad or unknown keyword, shared by every item
            raise argument_error(e, "compute_batch", kwargs) from None
        except RuVectorError as e:
            raise _item_error(0, e) from e
    # One tight loop per case (lengths are checked above): every µs of Python per item is
    # paid on the calling thread before the pool starts.
    prepare = mechanism._prepare
    arg_columns = [itertools.repeat(None, total) if col is None else col for _, col, _ in given]
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
        raise _item_error(len(jobs), argument_error(e, "compute_batch", kwargs)) from None
    except RuVectorError as e:
        raise _item_error(len(jobs), e) from e
    return jobs

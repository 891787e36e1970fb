"""Running prepared jobs on the C++ pool (docs/contract.md §5), synchronously or from asyncio.

Each native mechanism has ``_prepare(...)``, which converts and validates one call's
arguments (with the GIL held) and returns a job; batches (``_batch.py``) prepare every item
first and hand chunks of jobs here. Jobs run on the C++ pool with the GIL released. Async
calls hand jobs to the same pool; a finished call reaches its event loop through the loop's
completion channel (a socket the loop watches, written by the worker without the GIL; the
loop's thread then resolves the future), or, on loops that cannot watch a socket, through
``loop.call_soon_threadsafe`` from the worker. The event loop is never blocked, and nested
work (a batch inside an async call) shares the one pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _native
from ._errors import RuVectorError


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
# The process the channels belong to: a forked child that keeps running an inherited loop
# must not read the parent's sockets (it would take the parent's wake-ups), so it makes
# channels of its own.
_pid = os.getpid()


def _forget_channels() -> None:
    """In a forked child: the inherited channels are the parent's; new calls get new ones."""
    global _channels, _channels_lock, _last, _pid
    _channels = weakref.WeakKeyDictionary()
    _channels_lock = threading.Lock()  # another thread may have held it at the fork
    _last = (lambda: None, None)
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_channels)


def _channel_of(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's completion channel (POSIX selector loops), made on first use: pool workers
    queue finished calls and write a byte to a socket the loop watches, without the GIL; the
    loop's reader resolves the futures on its own thread. None where the loop cannot watch a
    socket (e.g. Windows' proactor loop): completions then go through call_soon_threadsafe."""
    global _last
    if _pid != os.getpid():  # forked without the at-fork hook (a C-level fork())
        _forget_channels()
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


def run_jobs(jobs: list[Any], max_workers: int = 0) -> list[Any]:
    """Runs prepared jobs on the pool (at most max_workers threads, 0: all) with the GIL
    released, and returns their outputs; the first failed item's error is raised."""
    result: list[Any] = _native._run_jobs(jobs, max_workers)
    return result


async def run_job_async(job: Any) -> Any:
    """Runs one prepared job (compute_async) on the pool; the output is awaited like
    run_jobs_async's, without the list around it."""
    loop = asyncio.get_running_loop()
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

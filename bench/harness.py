"""Timing helpers for bench/compare.py and its per-mechanism row modules.

The machines are shared and noisy: candidates run alternately, each repeated, and only the
medians are compared, as ratios within one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the table: ruvector against one peer on one workload."""

    section: str
    case: str
    ruvector_ms: float
    peer: str = ""
    peer_ms: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.peer_ms else self.ruvector_ms / self.peer_ms


def time_alternating(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 1,
    min_time: float = 0.0,
    settle: float = 0.01,
    between: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each candidate, run in alternation (A B C A B C ...).

    With ``min_time`` > 0 each sample loops the call until that many seconds have passed
    (for microsecond-scale calls) and reports the per-call time.

    Before each sample the calling thread busy-waits ``settle`` seconds. OpenMP runtimes
    (torch's, OpenBLAS's) keep their threads spinning for a few milliseconds after a call, and
    whichever candidate ran next shared the two cores with them (measured: ruvector's
    100-item batch took 12-14 ms right after torch's SDPA, 10.2-10.7 ms after the pause). The
    pause spins rather than sleeps: after a sleep this VM's CPUs come back slower for a while.

    ``between``, when given, runs after each round, outside the timed calls (a TileWatch).
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            settled = time.perf_counter() + settle
            while time.perf_counter() < settled:
                pass
            calls = 0
            start = time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            samples[name].append(elapsed / calls)
        if between is not None:
            between()
    return {name: statistics.median(s) for name, s in samples.items()}


def amx_tile_rates(seconds: float = 0.002) -> list[float]:
    """The AMX tiles' float32-equivalent GFLOP/s on each CPU this process may use, measured now
    by moving the calling thread from CPU to CPU (empty without AMX, or with it turned off).

    On a shared host another guest on the same physical core can slow a core's tiles ~3× for
    seconds at a time (measured here: ~380 GFLOP/s free, 120-250 loaded), and every AMX kernel
    with them, while FMA code slows ~1.2-1.5×: the ratios of the AMX rows move with it.
    """
    from ruvector import _native

    if not _native._amx_enabled():
        return []
    if not hasattr(os, "sched_getaffinity"):
        return [_native._amx_tile_gflops(seconds)]
    cpus = sorted(os.sched_getaffinity(0))
    rates = []
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            rates.append(_native._amx_tile_gflops(seconds))
    finally:
        os.sched_setaffinity(0, set(cpus))
    return rates


class TileWatch:
    """Samples amx_tile_rates() between the rounds of time_alternating (``between=watch``); its
    note gives each CPU's median, e.g. {"AMX tiles GFLOP/s": "378/141"}."""

    def __init__(self) -> None:
        self.samples: list[list[float]] = []

    def __call__(self) -> None:
        rates = amx_tile_rates()
        if rates:
            self.samples.append(rates)

    def note(self) -> dict[str, str]:
        if not self.samples:
            return {}
        per_cpu = zip(*self.samples, strict=True)
        return {"AMX tiles GFLOP/s": "/".join(f"{statistics.median(r):.0f}" for r in per_cpu)}


def peak_rss_growth(setup: str, call: str) -> int:
    """Bytes the peak RSS of a fresh interpreter grows by while running ``call`` once, after
    ``setup`` (inputs built, libraries imported, a warm-up call if wanted).

    Linux resets the high-water mark on ``echo 5 > /proc/self/clear_refs``: the growth is
    VmHWM after the call minus VmRSS before it, so memory freed during imports or setup does
    not hide what the call itself takes.
    """
    code = (
        "import gc\n"
        "def _status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key):\n"
        "            return int(line.split()[1]) * 1024\n"
        + textwrap.dedent(setup)
        + "\ngc.collect()\n"
        + "open('/proc/self/clear_refs', 'w').write('5')\n"
        + "_before = _status('VmRSS:')\n"
        + textwrap.dedent(call)
        + "\n_after = _status('VmHWM:')\n"
        + "print(_after - _before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def torch_or_none():
    """torch on as many threads as ruvector's pool, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    import ruvector

    torch.set_num_threads(ruvector.get_num_threads())
    return torch


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"

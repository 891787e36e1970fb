"""Timing helpers for bench/compare.py and its per-mechanism row modules.

The machines are shared and noisy: candidates run in blocks, taking turns, each repeated; the
medians are compared, as ratios within one run, beside the run's own ceilings.
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


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one candidate: the median over its blocks, and the fastest and
    slowest block."""

    median: float
    low: float
    high: float

    def ms(self) -> tuple[float, float, float]:
        return self.median * 1e3, self.low * 1e3, self.high * 1e3


@dataclass
class Row:
    """One line of the table: ruvector against one peer on one workload.

    ``limit_ms`` is the time the workload would take at this run's ceilings (GEMM rate, exp
    rate, memory bandwidth; see :func:`limit_seconds`), so the fraction of the machine that each
    side reaches is printed beside the ratio."""

    section: str
    case: str
    ruvector_ms: float
    peer: str = ""
    peer_ms: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    ruvector_range: tuple[float, float] | None = None
    peer_range: tuple[float, float] | None = None
    limit_ms: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.peer_ms else self.ruvector_ms / self.peer_ms

    @classmethod
    def timed(
        cls,
        section: str,
        case: str,
        ours: Timing,
        peer: str = "",
        theirs: Timing | None = None,
        extra: dict[str, str] | None = None,
        limit: float | None = None,
    ) -> Row:
        """A row from block timings (seconds) and the workload's limit (seconds, or None)."""
        notes = dict(extra or {})
        if isinstance(limit, Limit):
            notes["% of GEMM-ceiling limit"] = f"{100 * limit.at_gemm / ours.median:.0f}%"
        return cls(
            section,
            case,
            ours.median * 1e3,
            peer,
            theirs.median * 1e3 if theirs is not None else None,
            notes,
            (ours.low * 1e3, ours.high * 1e3),
            (theirs.low * 1e3, theirs.high * 1e3) if theirs is not None else None,
            limit * 1e3 if limit is not None else None,
        )


def time_blocks(
    candidates: dict[str, Callable[[], object]],
    blocks: int = 5,
    calls: int = 3,
    warmup: int = 1,
    min_time: float = 0.0,
    settle: float = 0.01,
    between: Callable[[], object] | None = None,
) -> dict[str, Timing]:
    """Per-call seconds of each candidate, timed in blocks: A's block, then B's, ... ``blocks``
    rounds. A block is ``warmup`` untimed calls (the first after switching candidates pays for
    caches and for the other candidate's threads winding down), then ``calls`` timed calls, or
    as many as fill ``min_time`` seconds (microsecond-scale calls); its figure is the time per
    call. Returns the median block and the fastest and slowest.

    Before each block the calling thread busy-waits ``settle`` seconds: OpenMP runtimes (torch's,
    OpenBLAS's) keep their threads spinning for a few milliseconds after a call, and whichever
    candidate ran next shared the two cores with them (measured: ruvector's 100-item batch took
    12-14 ms right after torch's SDPA, 10.2-10.7 ms after the pause). The pause spins rather than
    sleeps: after a sleep this VM's CPUs come back slower for a while.

    Each round starts one candidate further on (A B C, B C A, C A B, ...), so no candidate
    always follows the same one: in a fixed order, whatever slows the block after a peer's
    (torch's 100-item matmul-softmax-matmul left the next block 20-50 % slower on some rounds,
    10 ms later) always fell on the same candidate.

    ``between``, when given, runs after each round, outside the timed calls (a TileWatch).
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates.items())
    if not order:
        return {}
    for round_index in range(blocks):
        shift = round_index % len(order)
        for name, fn in order[shift:] + order[:shift]:
            settled = time.perf_counter() + settle
            while time.perf_counter() < settled:
                pass
            for _ in range(warmup):
                fn()
            count = 0
            start = time.perf_counter()
            while True:
                fn()
                count += 1
                elapsed = time.perf_counter() - start
                if count >= calls and elapsed >= min_time:
                    break
            samples[name].append(elapsed / count)
        if between is not None:
            between()
    return {name: Timing(statistics.median(s), min(s), max(s)) for name, s in samples.items()}


def time_alternating(candidates: dict[str, Callable[[], object]], repeats: int = 7, **kwargs) -> dict[str, float]:
    """Median seconds per call of each candidate: :func:`time_blocks` with ``repeats`` blocks,
    for rows that print medians only."""
    return {name: t.median for name, t in time_blocks(candidates, blocks=repeats, **kwargs).items()}


@dataclass(frozen=True)
class Ceilings:
    """This run's practical limits, measured beside the rows: the best float32 GEMM rate here
    (NumPy's BLAS, torch's MKL and ruvector's own kernel, same thread count), the best
    vectorised exp's rate on data in cache (torch.exp or NumPy, and ruvector's kernel) and the
    memory bandwidth of a large copy."""

    gemm_gflops: dict[str, float]
    exp_per_s: float
    exp_by: str
    bandwidth_gbs: float
    fma_peak_gflops: float | None = None
    microkernel_gflops: float | None = None

    @property
    def gemm_best(self) -> float:
        return max(self.gemm_gflops.values())

    @property
    def flops_limit(self) -> float:
        """GFLOP/s a product can reach here at most: the FMA units' peak where ruvector can
        measure it (a GEMM probe is a floor of that, and attention kernels beat it on some
        CPUs), else the best GEMM measured."""
        return max(self.fma_peak_gflops or 0.0, self.gemm_best)

    def describe(self) -> str:
        gemm = ", ".join(f"{k} {v:.0f}" for k, v in self.gemm_gflops.items())
        peak = ""
        if self.fma_peak_gflops:
            peak = f"FMA peak {self.fma_peak_gflops:.0f} GFLOP/s (registers only, the rows' limit); "
            if self.microkernel_gflops:
                share = self.microkernel_gflops / self.fma_peak_gflops
                peak += (
                    f"ruvector's GEMM micro-kernel on L1 data {self.microkernel_gflops:.0f} GFLOP/s "
                    f"({share:.0%} of the peak: the most any product of ours reaches here); "
                )
        return (
            f"{peak}GEMM GFLOP/s (NumPy, torch: 2048³; ruvector: 1024³): {gemm}; "
            f"exp ({self.exp_by}, in cache) {self.exp_per_s / 1e9:.2f} G/s; "
            f"copy bandwidth {self.bandwidth_gbs:.1f} GB/s"
        )


_ceilings: Ceilings | None = None


def measure_ceilings(blocks: int = 5) -> Ceilings:
    """Measures the ceilings now (and keeps them for :func:`limit_seconds`)."""
    import numpy as np

    global _ceilings
    rng = np.random.default_rng(0)
    n = 2048
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    cands: dict[str, Callable[[], object]] = {"numpy": lambda: a @ b}
    torch = torch_or_none()
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
        cands["torch"] = lambda: torch.matmul(ta, tb, out=tc)
    gemm = {name: 2 * n**3 / t.median / 1e9 for name, t in time_blocks(cands, blocks=blocks, calls=2).items()}
    # ruvector's own GEMM kernel, best round: on some CPUs the libraries above are far from the
    # FMA units' rate (a 2-core AMD EPYC with AVX-512: ~210-240 GFLOP/s, ours ~460), and a limit
    # below what a candidate reached would say nothing. Over a whole second: the shared
    # machine's speed drifts, and 0.3 s probes read 378 and 464 back to back.
    from ruvector import _native

    if hasattr(_native, "_gemm_gflops"):
        gemm["ruvector"] = _native._gemm_gflops(1.0)

    # exp on 64 Ki floats (256 KB: in L2), enough elements that torch splits it over its threads
    x = rng.uniform(-10, 10, 1 << 16).astype(np.float32)
    y = np.empty_like(x)
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        exp_fn, exp_by = (lambda: torch.exp(tx, out=ty)), "torch.exp"
    else:
        exp_fn, exp_by = (lambda: np.exp(x, out=y)), "numpy.exp"
    exp_t = time_blocks({"exp": exp_fn}, blocks=blocks, calls=20, min_time=0.01)["exp"]
    exp_rate = x.size / exp_t.median
    if hasattr(_native, "_exp_per_second"):
        ours = _native._exp_per_second(0.1)
        if ours > exp_rate:
            exp_rate, exp_by = ours, "ruvector's exp kernel"

    # a copy of 256 MB: read once, written once
    src = np.ones(1 << 26, dtype=np.float32)
    dst = np.empty_like(src)
    copy_t = time_blocks({"copy": lambda: np.copyto(dst, src)}, blocks=3, calls=2)["copy"]
    peak = _native._fma_peak_gflops(0.5) if hasattr(_native, "_fma_peak_gflops") else None
    micro = _native._microkernel_gflops(0.5) if hasattr(_native, "_microkernel_gflops") else None
    _ceilings = Ceilings(gemm, exp_rate, exp_by, 2 * src.nbytes / copy_t.median / 1e9, peak, micro)
    return _ceilings


def ceilings() -> Ceilings:
    """This run's ceilings, measured on first use."""
    return _ceilings if _ceilings is not None else measure_ceilings()


class Limit(float):
    """A row's limit in seconds (at the FMA peak), carrying ``at_gemm``: the same workload with
    its multiply-adds at the best float32 GEMM measured here instead, the ceiling issue 15
    states its targets against. The table gives the fraction of both."""

    at_gemm: float

    def __new__(cls, seconds: float, at_gemm: float) -> Limit:
        limit = super().__new__(cls, seconds)
        limit.at_gemm = at_gemm
        return limit


def limit_seconds(flops: float, exps: float = 0.0, bytes_moved: float = 0.0) -> Limit:
    """The time a workload would take at this run's ceilings, as a roofline: its multiply-adds
    at the FMA units' peak plus its exponentials at the exp rate (both take the vector units),
    or the bytes it must read or write at the copy bandwidth if that takes longer (loads
    overlap the arithmetic). ``at_gemm``: the same with the best GEMM measured in place of the
    peak, which is issue 15's own formula (its worked examples are GEMM time plus exp time)."""
    c = ceilings()
    exp_s = exps / c.exp_per_s
    memory_s = bytes_moved / (c.bandwidth_gbs * 1e9)
    return Limit(
        max(flops / (c.flops_limit * 1e9) + exp_s, memory_s),
        max(flops / (c.gemm_best * 1e9) + exp_s, memory_s),
    )


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

"""ruvector against its peers (NumPy, PyTorch, PyG), side by side, in one run.

    python bench/compare.py            # every section
    python bench/compare.py --quick    # fewer repeats, smaller sizes where a section allows
    python bench/compare.py --only dot_product,graph
    python bench/compare.py --markdown docs/performance.md   # also write the docs' performance page

Candidates run in blocks on the same inputs, taking turns (a warm-up call after each switch, then
timed calls); each figure is the median block, with the fastest and slowest beside it. Ratios
(ruvector / peer, lower is better) are what to read: the machine is shared and noisy. Each row
also gives the time its workload would take at this run's measured ceilings (GEMM rate, exp
rate, copy bandwidth) and the fraction of that limit each side reaches.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# NumPy's OpenBLAS threads spin for ~0.1 s after each product (its default thread timeout of
# 2^28 cycles); whatever ran next shared the cores with them (ruvector's L=1000 D=512 call took
# 17 ms right after a NumPy reference, 10 ms alone). NumPy is only a reference here: let its
# idle threads sleep at once. Set before NumPy loads; an explicit setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import ruvector as rv
from harness import amx_tile_rates, measure_ceilings
from report import TABLE_HEAD, machine_facts, table_line, write_markdown

SECTIONS = ["dot_product", "multi_head", "graph", "temporal", "async"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the run as a Markdown page (docs/performance.md) with an SVG plot beside it",
    )
    args = parser.parse_args()

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    started = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"ruvector {rv.__version__} | SIMD backend {rv.get_simd_backend()} | threads {rv.get_num_threads()} | "
        f"torch {torch_version} | {platform.processor() or platform.machine()} | {started}"
    )
    tiles = amx_tile_rates(0.01)
    if tiles:
        print(
            "AMX tiles now (float32-equivalent GFLOP/s per CPU, operands in L1): "
            + "/".join(f"{r:.0f}" for r in tiles)
            + ". Another guest on the same core can slow them ~3×; the multi_head and dot_product rows "
            "note their own."
        )
    limits = measure_ceilings(3 if args.quick else 5)
    print(f"Ceilings this run: {limits.describe()}")
    print()
    print(TABLE_HEAD)
    rows = []
    skipped = []
    for name in args.only.split(","):
        try:
            module = importlib.import_module(f"compare_{name}")
        except ImportError as e:
            print(f"| {name} | skipped: {e} | | | | | |")
            skipped.append((name, str(e)))
            continue
        for row in module.run(quick=args.quick):
            rows.append(row)
            print(table_line(row), flush=True)
    if args.markdown:
        facts = machine_facts(torch_version, started)
        write_markdown(args.markdown, sys.argv[1:], args.quick, facts, tiles, limits, rows, skipped)
        print(f"\nwrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Markdown page and SVG plot that ``bench/compare.py --markdown PATH`` writes.

The page is docs/performance.md: the run's machine facts, ceilings (GEMM, exp, bandwidth) and AMX tile rates, the
table exactly as compare.py prints it, and a plot of the ratios (an SVG written here, so the
bench extra needs no plotting library). How the rows are measured and what is known about them
is in docs/design/performance-notes.md, which the page links to.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np

import ruvector as rv
from harness import Ceilings, Row

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version_of(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def machine_facts(torch_version: str, started: str) -> dict[str, str]:
    """What the page says about the machine and the software of this run."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": started,
        "CPU": _cpu_model(),
        "CPUs this process may use": f"{cpus} of {os.cpu_count()}",
        "memory": _memory(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "ruvector": f"{rv.__version__}, SIMD backend {rv.get_simd_backend()}, {rv.get_num_threads()} threads",
        "CPU features": ", ".join(rv.get_features()),
        "NumPy": np.__version__,
        "torch": torch_version,
        "torch_geometric": _version_of("torch_geometric"),
    }


def write_markdown(
    path: str,
    argv: Sequence[str],
    quick: bool,
    facts: dict[str, str],
    tiles: Sequence[float],
    limits: Ceilings,
    rows: Sequence[Row],
    skipped: Sequence[tuple[str, str]],
) -> None:
    """Write the page to ``path`` and its plot beside it (``performance-ratios.svg``)."""
    directory = os.path.dirname(os.path.abspath(path))
    svg_name = "performance-ratios.svg"
    notes = os.path.relpath(os.path.join(REPO, "docs", "design", "performance-notes.md"), directory)
    command = " ".join(["python bench/compare.py", *argv])
    lines = [
        "# Performance",
        "",
        f"<!-- Written by `{command}`; do not edit by hand: run it again. -->",
        "",
        f"Written on {facts['date']} by",
        "",
        "```bash",
        command,
        "```",
        "",
        "Each ratio is ruvector's time over the peer's on the same inputs, the candidates timed in",
        "blocks taking turns, medians of the blocks: below 1 ruvector is faster. Read the ratios, not",
        "the milliseconds; each row's limit is its time at this run's ceilings. How the rows are measured, and what is",
        f"known about each, is in the [performance notes]({notes}).",
        "",
    ]
    if quick:
        lines += [
            "!!! warning",
            "    This run used `--quick`: fewer repeats and smaller sizes, to check the page's format.",
            "    Its numbers are not measurements to quote. Regenerate the page on a quiet machine with",
            "    `python bench/compare.py --markdown docs/performance.md`.",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines += ["", "## Ceilings", ""]
    lines.append(f"- Measured at the start of this run: {limits.describe()}.")
    lines.append(
        "- Each row's *limit* is a roofline: its multiply-adds at the FMA units' peak (measured on"
        " registers; the best GEMM where that probe is missing) plus its exponentials at the exp"
        " rate, or the bytes it must move at the copy bandwidth where that takes longer. The notes"
        " give ruvector's fraction of a second limit, its multiply-adds at the best float32 GEMM"
        " measured instead (the GEMM ceiling, the limit issue 15 states its targets against)."
    )
    if tiles:
        lines.append(
            "- AMX tiles when the run started (float32-equivalent GFLOP/s per CPU, operands in L1): "
            + "/".join(f"{r:.0f}" for r in tiles)
            + ". Another guest on the same core can slow them about 3×; the multi_head and dot_product rows"
            " note their own."
        )
    else:
        lines.append("- AMX tiles: not in use in this run.")
    ratios = [row for row in rows if row.ratio is not None]
    if ratios:
        lines += ["", "## Ratios", "", f"![ruvector / peer, lower is better]({svg_name})"]
    lines += [
        "",
        "## Table",
        "",
        *TABLE_HEAD.splitlines(),
    ]
    lines += [table_line(row, markdown=True) for row in rows]
    lines += [f"| {name} | skipped: {reason} | | | | | | | |" for name, reason in skipped]
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(directory, svg_name), "w") as f:
        f.write(ratio_svg(ratios))


def ratio_svg(rows: Sequence[Row]) -> str:
    """Horizontal bars of ruvector / peer on a log scale, a line at 1 (parity)."""
    labels = [f"{row.section}: {row.case} — vs {row.peer}" for row in rows]
    label_w = 12 + int(6.2 * max((len(label) for label in labels), default=20))  # ~6 px a character
    plot_w, bar_h, top = 380, 18, 30
    lo, hi = 0.01, 10.0
    height = top + bar_h * len(rows) + 40

    def x(ratio: float) -> float:
        r = min(max(ratio, lo), hi)
        return label_w + plot_w * (math.log10(r) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 60}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{label_w}" y="16" font-weight="bold">ruvector time / peer time (log scale, lower is better)</text>',
    ]
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        y = top + i * bar_h
        ratio = row.ratio or 0.0
        colour = "#2b7bb9" if ratio <= 1 else "#d9822b"
        label = escape(label)
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{label}</text>')
        x0, x1 = x(1.0), x(ratio)
        out.append(
            f'<rect x="{min(x0, x1):.1f}" y="{y + 3}" width="{max(abs(x1 - x0), 1):.1f}" height="{bar_h - 6}" '
            f'fill="{colour}"/>'
        )
        out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + 12}">{ratio:.2f}</text>')
    axis_y = top + bar_h * len(rows) + 4
    for tick in (0.01, 0.1, 1.0, 10.0):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y}" stroke="#999" stroke-width="0.5"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" text-anchor="middle">{tick:g}</text>')
    out.append(f'<line x1="{x(1.0):.1f}" y1="{top}" x2="{x(1.0):.1f}" y2="{axis_y}" stroke="#000"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit("run bench/compare.py --markdown PATH")


TABLE_HEAD = (
    "| section | case | ruvector ms (min–max) | peer | peer ms (min–max) | ratio | limit ms "
    "| % of limit ruvector / peer | notes |\n"
    "|---|---|---:|---|---:|---:|---:|---:|---|"
)


def table_line(row, markdown: bool = False) -> str:
    """One row of the table, as printed, or for the Markdown page (a | inside a cell, as in the
    notes' "max |Δ|", escaped so that it does not split the cell)."""

    def timed(ms, span):
        if ms is None:
            return ""
        return f"{ms:.3f} ({span[0]:.3f}–{span[1]:.3f})" if span is not None else f"{ms:.3f}"

    ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
    limit = f"{row.limit_ms:.3f}" if row.limit_ms is not None else ""
    reached = ""
    if row.limit_ms is not None:
        reached = f"{100 * row.limit_ms / row.ruvector_ms:.0f}%"
        if row.peer_ms:
            reached += f" / {100 * row.limit_ms / row.peer_ms:.0f}%"
    notes = ", ".join(f"{k} {v}" for k, v in row.extra.items())
    cells = [
        row.section,
        row.case,
        timed(row.ruvector_ms, row.ruvector_range),
        row.peer,
        timed(row.peer_ms, row.peer_range),
        ratio,
        limit,
        reached,
        notes,
    ]
    if markdown:
        cells = [cell.replace("|", "\\|") for cell in cells]
    return "| " + " | ".join(cells) + " |"

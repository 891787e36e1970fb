"""Rows of bench/compare.py for GraphAttention (issue 5): ruvector against PyG's GATConv and
GATv2Conv on random graphs (F=128, H=8, C=16), time and peak-RSS growth, in one run.

    python bench/compare_graph.py [--quick]

Both sides get the same weights, the inputs already in memory, 2 threads
(torch.set_num_threads(2), ruvector's pool as sized by RUVECTOR_NUM_THREADS or the CPU
affinity), and no attention weights back (need_weights=False / no return_attention_weights).
ruvector is timed on a GraphStructure built once (its CSR form, the point of that type); the
notes also give the time with a raw [E, 2] edge array, which rebuilds it on every call, and
the one-off GraphStructure construction. Peak-RSS growth is measured in a fresh interpreter
per candidate: the high-water mark of one call over what the inputs and libraries hold.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import ruvector as rv
from harness import Row, peak_rss_growth, time_alternating

F, HEADS, CHANNELS = 128, 8, 16
SIZES = [(10_000, 100_000), (169_343, 1_166_243)]  # the second is ogbn-arxiv's size
PEERS = {"gat": "GATConv", "gatv2": "GATv2Conv"}

# Shared by the main process and the RSS subprocesses: the same random graph and features.
_INPUTS = """
import numpy as np
rng = np.random.default_rng({seed})
x = rng.standard_normal(({n}, {f}), dtype=np.float32)
edge_index = rng.integers(0, {n}, size=(2, {e}), dtype=np.int64)
"""


def _torch():
    try:
        import torch
        import torch_geometric.nn  # noqa: F401
    except ImportError:
        return None
    torch.set_num_threads(2)
    return torch


def _layer(variant: str) -> rv.GraphAttention:
    return rv.GraphAttention({"num_heads": HEADS, "head_dim": CHANNELS}, in_features=F, variant=variant)


def _pyg_conv(torch, variant: str, weights: dict[str, np.ndarray]):
    from torch_geometric.nn import GATConv, GATv2Conv

    cls = GATConv if variant == "gat" else GATv2Conv
    conv = cls(F, CHANNELS, heads=HEADS).eval()
    conv.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return conv


def _rss(n: int, e: int, variant: str, peer: bool) -> int:
    setup = _INPUTS.format(seed=n, n=n, f=F, e=e)
    if peer:
        setup += f"""
import torch
from torch_geometric.nn import {PEERS[variant]} as Conv
torch.set_num_threads(2)
conv = Conv({F}, {CHANNELS}, heads={HEADS}).eval()
xt, ei = torch.from_numpy(x), torch.from_numpy(edge_index)
with torch.no_grad():
    conv(xt[:100], ei[:, :0])  # loads the lazy parts of torch, tiny
"""
        call = "with torch.no_grad():\n    out = conv(xt, ei)\n"
    else:
        setup += f"""
import ruvector as rv
layer = rv.GraphAttention({{"num_heads": {HEADS}, "head_dim": {CHANNELS}}}, in_features={F}, variant="{variant}")
graph = rv.GraphStructure.from_edge_index(edge_index, {n})
layer.compute(x[:100], [(0, 1)], need_weights=False)  # tiny: starts the pool
"""
        call = "out = layer.compute(x, graph, need_weights=False)\n"
    return peak_rss_growth(setup, call)


def run(quick: bool = False) -> list[Row]:
    torch = _torch()
    rows: list[Row] = []
    sizes = SIZES[:1] if quick else SIZES
    for n, e in sizes:
        scope: dict[str, object] = {}
        exec(_INPUTS.format(seed=n, n=n, f=F, e=e), scope)  # our own constant code, shared with _rss
        x, edge_index = scope["x"], scope["edge_index"]
        start = time.perf_counter()
        graph = rv.GraphStructure.from_edge_index(edge_index, n)
        build_ms = (time.perf_counter() - start) * 1e3
        pairs = np.ascontiguousarray(edge_index.T)
        big = n > 50_000
        repeats = 3 if big or quick else 5
        for variant in ("gat", "gatv2"):
            layer = _layer(variant)
            cands = {
                "ruvector": lambda layer=layer, x=x, graph=graph: layer.compute(x, graph, need_weights=False),
                "ruvector_raw": lambda layer=layer, x=x, pairs=pairs: layer.compute(x, pairs, need_weights=False),
            }
            extra: dict[str, str] = {}
            if torch is not None:
                conv = _pyg_conv(torch, variant, layer.get_weights())
                xt, ei = torch.from_numpy(x), torch.from_numpy(edge_index)

                def pyg(conv=conv, xt=xt, ei=ei):
                    with torch.no_grad():
                        return conv(xt, ei)

                cands["pyg"] = pyg
                # the same numbers, checked once here
                diff = np.abs(layer.compute(x, graph, need_weights=False).values - pyg().numpy()).max()
                extra["max |Δ| vs PyG"] = f"{diff:.1e}"
            t = time_alternating(cands, repeats=repeats)
            extra["raw [E,2] ms"] = f"{t['ruvector_raw'] * 1e3:.1f}"
            extra["GraphStructure build ms"] = f"{build_ms:.1f}"
            case = f"{variant.upper()} N={n:,} E={e:,} F={F} H={HEADS} C={CHANNELS}"
            peer = f"PyG {PEERS[variant]}" if torch is not None else ""
            rows.append(Row("graph", case, t["ruvector"] * 1e3, peer, t["pyg"] * 1e3 if "pyg" in t else None, extra))

            if big or quick:  # memory: one call in a fresh interpreter per candidate
                rv_growth = _rss(n, e, variant, peer=False)
                peer_growth = _rss(n, e, variant, peer=True) if torch is not None else None
                mem_extra = {"output MB": f"{n * HEADS * CHANNELS * 4 / 1e6:.0f}"}
                rows.append(
                    Row(
                        "graph",
                        f"{variant.upper()} N={n:,} E={e:,} peak RSS growth (MB)",
                        rv_growth / 1e6,
                        peer,
                        peer_growth / 1e6 if peer_growth is not None else None,
                        mem_extra,
                    )
                )
    return rows


def main() -> int:
    quick = "--quick" in sys.argv
    print(f"ruvector {rv.__version__} | SIMD backend {rv.get_simd_backend()} | threads {rv.get_num_threads()}")
    print("| case | ruvector | peer | peer | ratio | notes |")
    print("|---|---:|---|---:|---:|---|")
    for row in run(quick=quick):
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else ""
        peer_ms = f"{row.peer_ms:.1f}" if row.peer_ms is not None else ""
        notes = ", ".join(f"{k} {v}" for k, v in row.extra.items())
        print(f"| {row.case} | {row.ruvector_ms:.1f} | {row.peer} | {peer_ms} | {ratio} | {notes} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

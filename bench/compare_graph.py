"""Rows of bench/compare.py for GraphAttention (issue 5): ruvector against PyG's GATConv and
GATv2Conv on random graphs (F=128, H=8, C=16), time and peak-RSS growth, in one run; then
``targets=`` (1, 100, 1,000 targets, and 1,000 with a fresh set each call, against the full
call on the same graph) and bipartite
NeighborLoader-style mini-batches (x_src, x_dst) against PyG on the same batches.

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

import itertools
import sys
import time
from pathlib import Path

import numpy as np

import ruvector as rv
from harness import Row, limit_seconds, peak_rss_growth, time_alternating, time_blocks

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


def full_graph_rows(quick: bool = False) -> list[Row]:
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


def targets_rows(x: np.ndarray, graph: rv.GraphStructure, n: int, e: int, quick: bool) -> list[Row]:
    """compute(..., targets=ids) for 1, 100 and 1,000 random targets, and 1,000 with a fresh set
    on each call, against the full call: its cost should follow the targets' in-edges (the
    source rows they read are the only ones transformed), not N."""
    rng = np.random.default_rng(5)
    layer = _layer("gat")
    all_edges = graph.edges
    indptr = np.bincount(all_edges[:, 1], minlength=n)
    hc = HEADS * CHANNELS
    rows = []
    # (count, id sets): one set asked again and again, whose ~4.5 MB of source rows stay in the
    # L3 cache after the first call (a hot serving cache), then 1,000 targets with a fresh set
    # on each call, 16 sets in turn, whose rows (~50 MB distinct) come from memory (a cold one).
    cases = [(k, [rng.integers(0, n, k)]) for k in (1, 100, 1000)]
    cases.append((1000, [rng.integers(0, n, 1000) for _ in range(16)]))
    for k, sets in cases:
        edges = int(np.mean([indptr[ids].sum() + k for ids in sets]))  # in-edges and self-loops
        # the source rows those edges read: the only rows transformed
        sources = int(np.mean([len(np.union1d(all_edges[np.isin(all_edges[:, 1], ids), 0], ids)) for ids in sets]))
        turn = itertools.cycle(sets)
        cands = {
            "targets": lambda turn=turn: layer.compute(x, graph, targets=next(turn), need_weights=False),
            "full": lambda: layer.compute(x, graph, need_weights=False),
        }
        t = time_blocks(cands, blocks=3 if quick else 7, calls=1, min_time=0.05)
        limit = limit_seconds(2.0 * sources * F * hc + 2.0 * edges * hc, edges * HEADS, 4.0 * sources * F)
        fresh = ", a fresh set each call" if len(sets) > 1 else ""
        rows.append(
            Row.timed(
                "graph",
                f"GAT targets={k:,}{fresh} of N={n:,} E={e:,} (in-edges {edges:,})",
                t["targets"],
                "ruvector full call",
                t["full"],
                {"fraction of full (fastest blocks)": f"{t['targets'].low / t['full'].low:.4f}"},
                limit,
            )
        )
    return rows


def minibatch_rows(torch, x: np.ndarray, edge_index: np.ndarray, n: int, quick: bool) -> list[Row]:
    """One bipartite layer on a 2-hop mini-batch (1,024 seeds, fan-outs [15, 10]): the first
    layer's call (every sampled node → the nodes of hops 0..1), as a served model makes it."""
    # the batch is sampled as examples/neighbor_loader.py samples one (NeighborLoader's way)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from neighbor_loader import sample_batch

    rng = np.random.default_rng(9)
    seeds = rng.choice(n, 1024, replace=False)
    n_id, edges, counts = sample_batch(edge_index, n, seeds, [15, 10], rng)
    keep = edges[:, 1] < counts[1]
    xs = np.ascontiguousarray(x[n_id])
    xd = xs[: counts[1]]
    rows = []
    for variant in ("gat", "gatv2"):
        layer = _layer(variant)
        graph = rv.GraphStructure(edges[keep], (len(n_id), counts[1]))
        cands = {"ruvector": lambda layer=layer, graph=graph: layer.compute((xs, xd), graph, need_weights=False)}
        extra: dict[str, str] = {"graph build ms": ""}
        start = time.perf_counter()
        rv.GraphStructure(edges[keep], (len(n_id), counts[1]))
        extra["graph build ms"] = f"{(time.perf_counter() - start) * 1e3:.2f}"
        if torch is not None:
            conv = _pyg_conv(torch, variant, layer.get_weights())
            xst, xdt = torch.from_numpy(xs), torch.from_numpy(xd)
            ei = torch.from_numpy(np.ascontiguousarray(edges[keep].T))

            def pyg(conv=conv, xst=xst, xdt=xdt, ei=ei):
                with torch.no_grad():
                    return conv((xst, xdt), ei)

            cands["pyg"] = pyg
            diff = np.abs(cands["ruvector"]().values - pyg().numpy()).max()
            extra["max |Δ| vs PyG"] = f"{diff:.1e}"
        t = time_blocks(cands, blocks=3 if quick else 5, calls=3)
        case = f"{variant.upper()} mini-batch (x_src {len(n_id):,}, x_dst {counts[1]:,}, E {int(keep.sum()):,})"
        peer = f"PyG {PEERS[variant]}" if torch is not None else ""
        rows.append(Row.timed("graph", case, t["ruvector"], peer, t.get("pyg"), extra))
    return rows


def run_serving(quick: bool = False) -> list[Row]:
    """The serving rows: targets= and bipartite mini-batches, on the ogbn-arxiv-sized graph
    (the smaller one with --quick)."""
    n, e = SIZES[0] if quick else SIZES[1]
    scope: dict[str, object] = {}
    exec(_INPUTS.format(seed=n, n=n, f=F, e=e), scope)
    x, edge_index = scope["x"], scope["edge_index"]
    graph = rv.GraphStructure.from_edge_index(edge_index, n)
    return targets_rows(x, graph, n, e, quick) + minibatch_rows(_torch(), x, edge_index, n, quick)


def run(quick: bool = False) -> list[Row]:
    return full_graph_rows(quick) + run_serving(quick)


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

"""ruvector.dask on this machine, and a paper model of a graph that needs many machines.

    python bench/dask_scaleout.py [--quick]

Measured, each against single-process ruvector (whole machine, pool = all its CPUs):
  batch  a dot-product batch of 2,000 x (256x64) items, chunks of 250 items
  gat    one GAT layer (F=128, 8 heads x 16) on an ogbn-arxiv-sized random graph
         (169,343 nodes, 1,166,243 edges) split into 2 and into 8 row blocks
on a LocalCluster of 1 worker x 2 threads and of 2 workers x 1 thread (the same cores). The
inputs are placed on the workers first (contiguous row blocks per worker, each block's in-edges
beside it, as data loaded by the workers would be); the time is from the call to the result
held on the workers (persist + wait), so neither the upload nor the download is timed. Each
run is checked against the single-process result. Reported per run: time; bytes moved between
workers (from distributed's transfer log) beside the halo volume (halo rows x F x 4 bytes,
counted by ruvector.dask.halo_rows); peak RSS of each worker (VmHWM, reset before the run on
Linux) and its growth during the run.

Then the paper model: a 2-layer GAT over an ogbn-papers100M-sized graph (111 M nodes, 1.6 B
edges, 128 features, both layers 8 x 16) on 8 and 32 machines, from the per-row and per-edge
costs measured here; every assumption is printed with it.

--quick: one timed run per configuration after one warm-up (default: best of 3).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import time
import warnings
from typing import Any

import numpy as np

import ruvector as rv

BATCH, SEQ, DIM, BATCH_CHUNK = 2000, 256, 64, 250
ARXIV_N, ARXIV_E, F = 169_343, 1_166_243, 128
HEADS, CHANNELS = 8, 16
PAPERS_N, PAPERS_E = 111_059_956, 1_615_685_872
GB = 1e9


# ------------------------------------------------------------------------------ memory, transfers


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss(dask_worker: Any = None) -> int:
    """Reset this process's peak RSS (Linux: clear_refs 5) and return its current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass
    return _status_bytes("VmRSS")


def peak_rss(dask_worker: Any = None) -> int:
    return _status_bytes("VmHWM")


def bytes_moved(client: Any, since: float) -> int:
    """Bytes every worker fetched from another worker since `since` (wall clock)."""
    logs = client.run(
        lambda dask_worker: sum(e["total"] for e in dask_worker.transfer_incoming_log if e["start"] >= since)
    )
    return int(sum(logs.values()))


# -------------------------------------------------------------------------------------------- data


def batch_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((BATCH, SEQ, DIM), dtype=np.float32) for _ in range(3)]


def random_graph(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((ARXIV_N, F), dtype=np.float32)
    edges = rng.integers(0, ARXIV_N, size=(2, ARXIV_E), dtype=np.int64)
    return x, edges[:, np.argsort(edges[1], kind="stable")]  # sorted by target: in-edges by block


def local_graph(rng: np.random.Generator, cross: float = 0.1) -> np.ndarray:
    """The same sizes, numbered for locality: 90% of sources within +-500 ids of their target
    (as after a community or BFS order), 10% anywhere."""
    dst = np.sort(rng.integers(0, ARXIV_N, ARXIV_E))
    near = np.clip(dst + rng.integers(-500, 501, ARXIV_E), 0, ARXIV_N - 1)
    src = np.where(rng.random(ARXIV_E) < cross, rng.integers(0, ARXIV_N, ARXIV_E), near)
    return np.stack([src, dst])


def row_chunks(n: int, parts: int) -> tuple[int, ...]:
    size = math.ceil(n / parts)
    return tuple(min(size, n - i * size) for i in range(parts))


# ------------------------------------------------------------------------------------ single process


def best_of(repeats: int, run: Any) -> tuple[float, Any]:
    run()  # warm-up: page faults, the pool's threads
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def single_process(run: Any, repeats: int) -> dict[str, Any]:
    seconds, result = best_of(repeats, run)
    before = reset_peak_rss()
    run()
    return {"time": seconds, "result": result, "peak": peak_rss(), "growth": peak_rss() - before}


# ------------------------------------------------------------------------------------------ cluster


def on_cluster(client: Any, make: Any, expected: np.ndarray, repeats: int) -> dict[str, Any]:
    """Time `make()` (a lazy Dask array) from the call to its blocks held on the workers."""
    from distributed import wait

    def run() -> Any:
        out = client.persist(make())
        wait(out)
        return out

    run()
    best = math.inf
    for _ in range(repeats):
        before = client.run(reset_peak_rss)
        since = time.time()
        start = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - start
        if seconds < best:
            best = seconds
            moved = bytes_moved(client, since)
            peaks = client.run(peak_rss)
            growth = max(peaks[w] - before[w] for w in peaks)
        values = out.compute()
        del out
    return {
        "time": best,
        "moved": moved,
        "peak": max(peaks.values()),
        "growth": growth,
        "diff": float(np.abs(values - expected).max()),
    }


def place_rows(client: Any, array: np.ndarray, chunks: tuple[int, ...]) -> Any:
    """`array` as a Dask array whose consecutive row blocks sit on consecutive workers."""
    import dask.array as da

    workers = sorted(client.nthreads())
    bounds = np.cumsum((0, *chunks))
    parts = []
    for i, rows in enumerate(chunks):
        owner = workers[i * len(workers) // len(chunks)]
        block = client.scatter(array[bounds[i] : bounds[i + 1]], workers=[owner])
        parts.append(da.from_delayed(block, shape=(rows, *array.shape[1:]), dtype=array.dtype))
    return da.concatenate(parts)


def place_edges(client: Any, edges: np.ndarray, chunks: tuple[int, ...]) -> Any:
    """Target-sorted edges as a Dask array: chunk b = block b's in-edges, on block b's worker."""
    import dask.array as da

    bounds = np.cumsum((0, *chunks))
    cuts = np.searchsorted(edges[1], bounds)
    workers = sorted(client.nthreads())
    parts = []
    for b in range(len(chunks)):
        owner = workers[b * len(workers) // len(chunks)]
        piece = edges[:, cuts[b] : cuts[b + 1]]
        parts.append(da.from_delayed(client.scatter(piece, workers=[owner]), shape=piece.shape, dtype=piece.dtype))
    return da.concatenate(parts, axis=1)


# -------------------------------------------------------------------------------------- paper model


def expected_halo(n: int, edges_per_block: float, blocks: int) -> float:
    """Distinct sources of `edges_per_block` uniformly random edges that lie outside the block."""
    return n * (1.0 - math.exp(-edges_per_block / n)) * (1.0 - 1.0 / blocks)


def paper_model(costs: dict[str, float], cut: float, bandwidth: float) -> list[str]:
    """A 2-layer GAT (128 -> 8x16 -> 8x16) over an ogbn-papers100M-sized graph on M machines."""
    lines = [
        "| machines | partition | halo rows / machine / layer | halo bytes / layer (all) | memory / machine "
        "| compute / layer | halo transfer / layer | 2 layers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out_width = HEADS * CHANNELS
    for machines in (8, 32):
        rows, edges = PAPERS_N / machines, PAPERS_E / machines
        for name, halo in (
            ("random ids", expected_halo(PAPERS_N, edges, machines)),
            (f"locality order, {cut:.0%} of edges cut", min(cut * edges, expected_halo(PAPERS_N, cut * edges, 2))),
        ):
            local_rows = rows + halo
            compute = costs["s_per_row"] * local_rows + costs["s_per_edge"] * edges
            transfer = halo * F * 4 / bandwidth
            memory = (
                rows * (F + 2 * out_width) * 4  # x, hidden and output blocks
                + edges * 16  # its in-edges (int64 pairs)
                + halo * F * 4
                + costs["bytes_per_row"] * local_rows
                + costs["bytes_per_edge"] * edges  # the layer's working memory at its peak
            )
            lines.append(
                f"| {machines} | {name} | {halo / 1e6:.1f} M ({halo / rows:.0%} of its rows) "
                f"| {halo * F * 4 * machines / GB:.0f} GB | {memory / GB:.0f} GB | {compute:.0f} s "
                f"| {transfer:.0f} s | {2 * (compute + transfer):.0f} s |"
            )
    return lines


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description="ruvector.dask scale-out measurements")
    parser.add_argument("--quick", action="store_true", help="one timed run per configuration (default: best of 3)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)

    import dask
    import distributed
    from distributed import Client, LocalCluster

    import ruvector.dask as rd

    rng = np.random.default_rng(0)
    print(
        f"# ruvector {rv.__version__}, dask {dask.__version__}, distributed {distributed.__version__}, "
        f"SIMD {rv.get_simd_backend()}, {os.cpu_count()} CPUs, pool {rv.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}, {platform.machine()}, {'quick' if args.quick else 'best of 3'}"
    )
    q, k, v = batch_inputs(rng)
    x, edges = random_graph(rng)
    dot = rv.DotProductAttention()
    gat = rv.GraphAttention({"num_heads": HEADS, "head_dim": CHANNELS}, in_features=F)

    def batch_once() -> np.ndarray:
        return np.stack([o.values for o in dot.compute_batch(q, k, v, need_weights=False)])

    def gat_once(edge_index: np.ndarray = edges) -> np.ndarray:
        graph = rv.GraphStructure.from_edge_index(edge_index, ARXIV_N)
        return gat.compute(x, graph, need_weights=False).values

    rows: list[tuple[str, str, dict[str, Any]]] = []
    single_batch = single_process(batch_once, repeats)
    rows.append(("batch 2000x(256x64)", "one process", single_batch))
    single_gat = single_process(gat_once, repeats)
    rows.append(("GAT arxiv-sized", "one process", single_gat))
    # the per-row share of the layer's cost: the same layer on the nodes alone (self-loops only)
    no_edges = np.zeros((2, 0), np.int64)
    nodes_only = single_process(lambda: gat_once(no_edges), repeats)

    local_edges = local_graph(rng)
    single_local = single_process(functools.partial(gat_once, local_edges), repeats)
    rows.append(("GAT arxiv-sized, locality order", "one process", single_local))
    graphs = {"GAT arxiv-sized": (edges, single_gat), "GAT arxiv-sized, locality order": (local_edges, single_local)}
    halos = {(name, p): rd.halo_rows(e, row_chunks(ARXIV_N, p)) for name, (e, _) in graphs.items() for p in (2, 8)}

    for workers, threads in ((1, 2), (2, 1)):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        with cluster, Client(cluster) as client:
            label = f"{workers} worker{'s' if workers > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
            blocks = tuple([BATCH_CHUNK] * (BATCH // BATCH_CHUNK))
            qd, kd, vd = (place_rows(client, a, blocks) for a in (q, k, v))
            make = functools.partial(rd.batch, dot, qd, kd, vd)
            result = on_cluster(client, make, single_batch["result"], repeats)
            rows.append(("batch 2000x(256x64)", f"{label}, {len(blocks)} chunks", result))
            del qd, kd, vd
            # Fusion off keeps ruvector.dask's placement of each block's tasks beside its rows;
            # with 2 workers, also Dask's default (fused graph, Dask's own placement).
            for fuse in (False, None) if workers > 1 else (False,):
                for (name, parts), counts in halos.items():
                    graph_edges, single = graphs[name]
                    chunks = row_chunks(ARXIV_N, parts)
                    xd, ed = place_rows(client, x, chunks), place_edges(client, graph_edges, chunks)
                    make = functools.partial(rd.graph_attention, gat, xd, ed)
                    with dask.config.set({"optimization.fuse.active": fuse}):
                        result = on_cluster(client, make, single["result"], repeats)
                    owner = np.arange(parts) * workers // parts  # place_rows' block -> worker
                    result["halo"] = int(counts.sum()) * F * 4
                    result["halo_across"] = int(counts[owner[:, None] != owner[None, :]].sum()) * F * 4
                    placement = "" if fuse is False else ", Dask's default placement"
                    rows.append((name, f"{label}, {parts} blocks{placement}", result))
                    del xd, ed

    print(
        "\n| workload | where | time | bytes moved between workers | halo between blocks (across workers) "
        "| peak RSS / worker (growth in the run) | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|")
    for workload, where, r in rows:
        moved = f"{r['moved'] / 1e6:.1f} MB" if "moved" in r else "-"
        halo = f"{r['halo'] / 1e6:.1f} MB ({r['halo_across'] / 1e6:.1f} MB)" if "halo" in r else "-"
        diff = f"{r['diff']:.1e}" if "diff" in r else "-"
        print(
            f"| {workload} | {where} | {r['time']:.2f} s | {moved} | {halo} | "
            f"{r['peak'] / 1e6:.0f} MB (+{max(r['growth'], 0) / 1e6:.0f} MB) | {diff} |"
        )

    print(
        "\nHalo rows, measured (ruvector.dask.halo_rows) vs. the random-graph formula "
        "N(1 - exp(-E/(P N)))(1 - 1/P) per block:"
    )
    for parts in (2, 8):
        predicted = parts * expected_halo(ARXIV_N, ARXIV_E / parts, parts)
        random_ids = int(halos["GAT arxiv-sized", parts].sum())
        ordered = int(halos["GAT arxiv-sized, locality order", parts].sum())
        print(
            f"  {parts} blocks: random graph {random_ids} rows ({random_ids / ARXIV_N:.2f} N; formula "
            f"{predicted:.0f}); locality-ordered graph {ordered} rows ({ordered / ARXIV_N:.2f} N)"
        )

    edge_seconds = max(single_gat["time"] - nodes_only["time"], 1e-9)
    costs = {
        "s_per_row": nodes_only["time"] / ARXIV_N,
        "s_per_edge": edge_seconds / ARXIV_E,
        "bytes_per_row": nodes_only["growth"] / ARXIV_N,
        "bytes_per_edge": max(single_gat["growth"] - nodes_only["growth"], 0) / ARXIV_E,
    }
    print(
        f"\nCosts measured here (one process, {rv.get_num_threads()} threads): "
        f"{costs['s_per_row'] * 1e9:.0f} ns per node row, {costs['s_per_edge'] * 1e9:.0f} ns per edge; "
        f"working memory {costs['bytes_per_row']:.0f} B per row, {costs['bytes_per_edge']:.0f} B per edge."
    )
    bandwidth = 1.25 * GB
    print(
        "\nPaper model: 2-layer GAT over ogbn-papers100M's size (111 M nodes, 1.6 B edges, F=128, "
        "8x16 heads in both layers). Assumptions: each machine computes like this one at the rates "
        "above (divide the compute column by cores/2 for bigger machines, if the pool scales); "
        "10 Gb/s per machine (1.25 GB/s), full bisection, halo transfer not overlapped with compute; "
        "edges already partitioned by target block (loaded where their targets live); a locality "
        "order cutting 10% of edges, each cut edge bringing at most one halo row."
    )
    print("\n".join(paper_model(costs, cut=0.1, bandwidth=bandwidth)))


if __name__ == "__main__":
    main()

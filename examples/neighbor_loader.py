"""Serve a 2-layer GAT on NeighborLoader-style mini-batches with bipartite (x_src, x_dst) inputs.

PyG's NeighborLoader samples, for a batch of seed nodes, a few in-neighbours per hop and
relabels the sampled nodes seeds first; each layer then maps the nodes of one more hop onto
those of one hop fewer, a bipartite graph: ``conv((x_src, x_dst), edge_index)`` with
``x_dst = x_src[:n_dst]``. ruvector takes the same inputs: ``compute((x_src, x_dst), graph)``
with ``GraphStructure(edges, num_nodes=(N_src, N_dst))``. The layers come from PyG modules via
``GraphAttention.from_pyg``; the batch is built here the way NeighborLoader builds one
(NeighborLoader itself needs pyg-lib or torch-sparse), and the output is checked against PyG.

    python examples/neighbor_loader.py
"""

from __future__ import annotations

import time

import numpy as np

import ruvector as rv


def random_graph(rng: np.random.Generator, n: int, e: int) -> np.ndarray:
    return rng.integers(0, n, size=(2, e), dtype=np.int64)  # PyG's edge_index [2, E]


def sample_batch(edge_index: np.ndarray, n: int, seeds: np.ndarray, fanouts: list[int], rng: np.random.Generator):
    """As NeighborLoader: nodes relabelled seeds first, then each hop's new nodes; the sampled
    in-edges in local ids [E', 2]; the node count after each hop."""
    order = np.argsort(edge_index[1], kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(edge_index[1], minlength=n))])
    local = np.full(n, -1, np.int64)
    local[seeds] = np.arange(len(seeds))
    n_id, frontier, edges, counts = list(seeds), seeds, [], [len(seeds)]
    for fanout in fanouts:
        new = []
        for v in frontier:
            incoming = order[indptr[v] : indptr[v + 1]]
            if len(incoming) > fanout:
                incoming = rng.choice(incoming, fanout, replace=False)
            for u in edge_index[0, incoming]:
                if local[u] < 0:
                    local[u] = len(n_id)
                    n_id.append(u)
                    new.append(u)
                edges.append((local[u], local[v]))
        frontier = np.array(new, np.int64)
        counts.append(len(n_id))
    return np.array(n_id), np.array(edges, np.int64).reshape(-1, 2), counts


def serve(layers: list[rv.GraphAttention], x: np.ndarray, edges: np.ndarray, counts: list[int]) -> np.ndarray:
    """The model on one batch: layer k maps the nodes of hops 0..L-k onto those of hops 0..L-k-1."""
    h = x
    for k, layer in enumerate(layers):
        n_src, n_dst = counts[len(layers) - k], counts[len(layers) - k - 1]
        keep = edges[:, 1] < n_dst
        graph = rv.GraphStructure(edges[keep], num_nodes=(n_src, n_dst))
        h = layer.compute((h[:n_src], h[:n_dst]), graph, need_weights=False).values
        if k + 1 < len(layers):
            h = np.maximum(h, 0)  # ReLU between the layers
    return h


def main() -> None:
    rng = np.random.default_rng(0)
    n, e, features = 20_000, 200_000, 64
    edge_index = random_graph(rng, n, e)
    x = rng.standard_normal((n, features), dtype=np.float32)
    seeds = rng.choice(n, 512, replace=False)
    n_id, edges, counts = sample_batch(edge_index, n, seeds, [10, 5], rng)
    print(f"batch: {len(seeds)} seeds, {len(n_id):,} sampled nodes, {len(edges):,} sampled edges")
    xb = np.ascontiguousarray(x[n_id])

    try:
        import torch
        from torch_geometric.nn import GATConv
    except ImportError:
        print("torch_geometric is not installed: serving with untrained ruvector layers, no check")
        layers = [
            rv.GraphAttention({"num_heads": 4, "head_dim": 16, "seed": 1}, in_features=features, residual=True),
            rv.GraphAttention({"num_heads": 1, "head_dim": 8, "seed": 2}, in_features=64),
        ]
        print("output", serve(layers, xb, edges, counts).shape)
        return

    torch.manual_seed(0)
    m1 = GATConv(features, 16, heads=4, residual=True).eval()
    m2 = GATConv(64, 8, heads=1).eval()
    layers = [rv.GraphAttention.from_pyg(m1), rv.GraphAttention.from_pyg(m2)]

    start = time.perf_counter()
    ours = serve(layers, xb, edges, counts)
    ours_ms = (time.perf_counter() - start) * 1e3

    with torch.no_grad():
        start = time.perf_counter()
        h = torch.from_numpy(xb)
        for k, m in enumerate((m1, m2)):
            n_src, n_dst = counts[2 - k], counts[1 - k]
            keep = edges[:, 1] < n_dst
            ei = torch.from_numpy(np.ascontiguousarray(edges[keep].T))
            h = m((h[:n_src], h[:n_dst]), ei)
            if k == 0:
                h = h.relu()
        theirs = h.numpy()
        pyg_ms = (time.perf_counter() - start) * 1e3

    print(f"output [{ours.shape[0]}, {ours.shape[1]}] for the {len(seeds)} seeds")
    print(f"ruvector {ours_ms:.1f} ms, PyG {pyg_ms:.1f} ms (one batch, first call)")
    print(f"max |ruvector - PyG| = {np.abs(ours - theirs).max():.2e}")


if __name__ == "__main__":
    main()

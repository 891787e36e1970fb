"""A 2-layer GAT on a Dask cluster, checked against single-process ruvector.

A random community graph (20,000 papers in 40 fields; most citations stay within a field) with
node ids numbered field by field, so consecutive ids are neighbours. The features are a Dask
array chunked by rows, one block per worker; each layer is one ruvector.dask.graph_attention
call whose output is the next layer's input. The script prints the time on the cluster and in
one process, the largest difference, and the halo: the rows each block fetches from the others,
for this numbering and for the same graph with its ids shuffled.

    python examples/dask_graph.py [--workers 2]

Needs the dask extra: pip install "ruvector-latent[dask]".
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ruvector as rv


def community_graph(rng: np.random.Generator, nodes: int = 20_000, fields: int = 40, features: int = 64):
    per_field = nodes // fields
    field = np.repeat(np.arange(fields), per_field)
    signatures = rng.standard_normal((fields, features))
    x = (signatures[field] + rng.standard_normal((nodes, features))).astype(np.float32)
    cites = rng.integers(3, 15, nodes)  # in-degree of each paper
    targets = np.repeat(np.arange(nodes), cites)
    same = rng.random(targets.size) < 0.9
    sources = np.where(
        same,
        field[targets] * per_field + rng.integers(0, per_field, targets.size),
        rng.integers(0, nodes, targets.size),
    )
    return x, np.stack([sources, targets]).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import ruvector.dask as rd

    rng = np.random.default_rng(0)
    x, edge_index = community_graph(rng)
    n, f = x.shape
    conv1 = rv.GraphAttention({"num_heads": 8, "head_dim": 16}, in_features=f)
    conv2 = rv.GraphAttention({"num_heads": 1, "head_dim": 40}, in_features=128, concat=False)

    start = time.perf_counter()
    graph = rv.GraphStructure.from_edge_index(edge_index, n)
    expected = conv2.compute(conv1.compute(x, graph, need_weights=False).values, graph, need_weights=False).values
    single = time.perf_counter() - start

    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    )
    with cluster, Client(cluster) as client:
        x_rows = da.from_array(x, chunks=(-(-n // args.workers), f))  # one row block per worker
        x_rows = client.persist(x_rows)  # the blocks live on the workers, as loaded data would
        start = time.perf_counter()
        hidden = rd.graph_attention(conv1, x_rows, edge_index)
        out = rd.graph_attention(conv2, hidden, edge_index)
        values = out.compute()  # each block's tasks beside its rows
        distributed = time.perf_counter() - start

    halo = rd.halo_rows(edge_index, x_rows.chunks[0]).sum()
    shuffle = rng.permutation(n)
    halo_shuffled = rd.halo_rows(shuffle[edge_index], x_rows.chunks[0]).sum()
    print(f"graph: {n} nodes, {edge_index.shape[1]} edges, {f} features, {args.workers} row blocks")
    print(f"2-layer GAT: {distributed:.2f} s on the cluster, {single:.2f} s in one process")
    print(f"max |difference| against one process: {np.abs(values - expected).max():.2e}")
    print(
        f"halo of layer 1: {halo} rows = {halo * f * 4 / 1e6:.2f} MB "
        f"({halo / n:.1%} of the nodes); with the ids shuffled: {halo_shuffled} rows "
        f"= {halo_shuffled * f * 4 / 1e6:.2f} MB"
    )
    assert np.allclose(values, expected, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    main()

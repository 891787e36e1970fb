"""ruvector.dask (docs/contract.md §10): both entry points against single-process ruvector, on a
LocalCluster of worker processes over loopback, and a worker killed mid-computation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import ruvector as rv

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
rd = pytest.importorskip("ruvector.dask")
psutil = pytest.importorskip("psutil")  # a dependency of distributed

# Closing a cluster whose workers are still shutting down can leave a socket or event loop for
# the garbage collector; that is distributed's shutdown, not a ruvector leak.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

CLUSTER = {
    "n_workers": 2,
    "processes": True,
    "threads_per_worker": 1,
    "dashboard_address": "127.0.0.1:0",
    "host": "127.0.0.1",
}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as c:
        yield c


def community_graph(num_nodes: int, num_edges: int, rng: np.random.Generator, *, self_loops: int = 0) -> np.ndarray:
    """Edges mostly inside blocks of consecutive ids (communities), some across, a few self-loops."""
    src = rng.integers(0, num_nodes, num_edges)
    near = np.clip(src + rng.integers(-40, 41, num_edges), 0, num_nodes - 1)
    far = rng.integers(0, num_nodes, num_edges)
    dst = np.where(rng.random(num_edges) < 0.8, near, far)
    dst[:self_loops] = src[:self_loops]
    return np.stack([src, dst]).astype(np.int64)


def single_process_batch(layer: Any, *arrays: np.ndarray, **kwargs: Any) -> np.ndarray:
    return np.stack([out.values for out in layer.compute_batch(*arrays, need_weights=False, **kwargs)])


def test_import_ruvector_does_not_import_dask() -> None:
    code = "import sys, ruvector; assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ batch


def test_batch_each_mechanism_equals_compute_batch(client: Any) -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((37, 12, 16), dtype=np.float32)
    k = rng.standard_normal((37, 9, 16), dtype=np.float32)
    v = rng.standard_normal((37, 9, 5), dtype=np.float32)
    mask = rng.random((12, 9)) < 0.7
    dot = rv.DotProductAttention()
    mha = rv.MultiHeadAttention({"num_heads": 4}, embed_dim=16)
    mha.set_weights({name: rng.standard_normal(w.shape).astype(np.float32) for name, w in mha.get_weights().items()})
    temporal = rv.TemporalAttention(decay_rate=0.3, window=6.0)
    times = np.sort(rng.random((37, 12), dtype=np.float32) * 10, axis=1)
    cases = [
        (dot, (da.from_array(q, chunks=(8, 12, 16)), k, v), {"mask": mask}, (dot, (q, k, v))),
        (mha, (da.from_array(q, chunks=(10, 6, 8)), q, q), {"causal": True}, (mha, (q, q, q))),
        (temporal, (da.from_array(q, chunks=9), times), {}, (temporal, (q, times))),
        (temporal, (q,), {}, (temporal, (q,))),
    ]
    for layer, arrays, kwargs, (same, plain) in cases:
        result = rd.batch(layer, *arrays, **kwargs)
        first = arrays[0]
        assert result.chunks[0] == (first.chunks[0] if isinstance(first, da.Array) else (37,))
        assert result.dtype == np.float32
        expected = single_process_batch(same, *plain, **kwargs)
        assert result.shape == expected.shape
        np.testing.assert_allclose(client.compute(result).result(), expected, rtol=1e-6, atol=1e-6)


def test_batch_ships_the_layer_once(client: Any) -> None:
    rng = np.random.default_rng(2)
    q = da.from_array(rng.standard_normal((64, 8, 8), dtype=np.float32), chunks=4)
    result = rd.batch(rv.MultiHeadAttention({"num_heads": 2}, embed_dim=8), q, q, q)
    graph = dict(result.__dask_graph__())
    layer_keys = [key for key in graph if str(key).startswith("ruvector-layer-")]
    assert len(layer_keys) == 1  # 16 chunk tasks, one key holding the layer
    deps, _ = dask.core.get_deps(graph)
    assert sum(layer_keys[0] in d for d in deps.values()) == 16
    result.compute()
    # each worker received the layer at most once (one of them computed the key itself)
    layer_key = layer_keys[0]
    arrivals = client.run(
        lambda dask_worker: sum(
            key == layer_key for entry in dask_worker.transfer_incoming_log for key in entry["keys"]
        )
    )
    assert all(n <= 1 for n in arrivals.values()), arrivals


def test_worker_pool_takes_the_worker_threads(client: Any) -> None:
    q = np.ones((4, 3, 2), dtype=np.float32)
    rd.batch(rv.DotProductAttention(), da.from_array(q, chunks=1), q, q).compute()
    assert set(client.run(rv.get_num_threads).values()) == {1}


def test_batch_refuses_what_it_cannot_run() -> None:
    q = np.ones((4, 3, 2), dtype=np.float32)
    bad: list[tuple[Any, tuple[Any, ...], dict[str, Any], str]] = [
        (rv.GraphAttention(), (q,), {}, "graph_attention"),
        (rv.HierarchicalAttention(), (q,), {}, "DotProductAttention, MultiHeadAttention or TemporalAttention"),
        (rv.DotProductAttention(), (q, q), {}, "3 batch arrays"),
        (rv.DotProductAttention(), (q, q, q[:3]), {}, "give one entry per item"),
        (rv.DotProductAttention(), (q[0], q[0], q[0]), {}, "3-D array"),
        (rv.DotProductAttention(), (q, q, q), {"need_weights": True}, "values only"),
        (rv.DotProductAttention(), (q, np.ones((4, 3, 5), np.float32), q), {}, "columns"),
        (rv.TemporalAttention(), (q, np.ones((4, 2), np.float32)), {}, "imestamps"),
        (rv.DotProductAttention(), (None, q, q), {}, "NoneType"),
    ]
    for layer, arrays, kwargs, message in bad:
        with pytest.raises(rv.InvalidInputError, match=message):
            rd.batch(layer, *arrays, **kwargs)


# -------------------------------------------------------------------------------- graph_attention


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("self_loops", [True, False])
def test_graph_attention_equals_the_full_call(variant: str, concat: bool, self_loops: bool) -> None:
    # The synchronous scheduler runs the very same task graph; the cluster tests below run it on
    # worker processes. Self-loops in the input, duplicate edges and nodes without in-edges.
    rng = np.random.default_rng(3)
    num_nodes = 700
    edges = community_graph(num_nodes, 4000, rng, self_loops=60)
    edges = np.concatenate([edges, edges[:, 100:130]], axis=1)
    edge_features = rng.standard_normal((edges.shape[1], 3), dtype=np.float32)
    x = rng.standard_normal((num_nodes, 10), dtype=np.float32)
    layer = rv.GraphAttention(
        {"num_heads": 3, "head_dim": 4}, variant=variant, concat=concat, add_self_loops=self_loops, edge_dim=3
    )
    result = rd.graph_attention(layer, da.from_array(x, chunks=(101, 5)), edges, edge_features=edge_features)
    expected = layer.compute(x, rv.GraphStructure.from_edge_index(edges, num_nodes, edge_features=edge_features)).values
    assert result.chunks[0] == da.from_array(x, chunks=(101, 5)).chunks[0]
    np.testing.assert_allclose(result.compute(scheduler="sync"), expected, rtol=1e-5, atol=1e-6)


def test_two_layer_gat_on_the_cluster(client: Any) -> None:
    rng = np.random.default_rng(4)
    num_nodes = 3000
    edges = community_graph(num_nodes, 20000, rng, self_loops=10)
    x = rng.standard_normal((num_nodes, 16), dtype=np.float32)
    conv1 = rv.GraphAttention({"num_heads": 4, "head_dim": 8})  # in_features=None: set by the first call
    conv2 = rv.GraphAttention({"num_heads": 1, "head_dim": 6}, variant="gatv2", concat=False)
    hidden = rd.graph_attention(conv1, x, edges)  # NumPy x: one row block per worker
    assert len(hidden.chunks[0]) == 2
    out = rd.graph_attention(conv2, hidden, da.from_array(edges, chunks=(2, 7000)))
    assert out.chunks[0] == hidden.chunks[0] and out.shape == (num_nodes, 6)
    values = client.compute(out).result()
    graph = rv.GraphStructure.from_edge_index(edges, num_nodes)
    expected = conv2.compute(conv1.compute(x, graph).values, graph).values
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_blocks_are_computed_where_their_rows_live(client: Any) -> None:
    rng = np.random.default_rng(9)
    num_nodes = 4000
    edges = community_graph(num_nodes, 30000, rng)
    x = client.persist(da.from_array(rng.standard_normal((num_nodes, 16), dtype=np.float32), chunks=1000))
    distributed.wait(x)
    holders = [client.who_has(x)[key][0] for key in (k[0] for k in x.__dask_keys__())]
    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 4}, in_features=16)
    hidden = rd.graph_attention(layer, x, edges)
    out = rd.graph_attention(rv.GraphAttention({"num_heads": 1, "head_dim": 4}), hidden, edges)

    def annotated(array: Any) -> list[str]:
        layers = array.__dask_graph__().layers
        return [layers[n].annotations["workers"][0] for n in sorted(layers, key=str) if n.startswith("_gat_block")]

    # each block's layer task is pinned (loosely) to the worker holding the block, in both layers
    assert sorted(annotated(hidden)) == sorted(holders)
    assert sorted(annotated(out)) == sorted(holders * 2)  # out's graph holds both layers
    # the returned array's own optimisation keeps them (the default one fuses them away)
    assert isinstance(hidden, rd.PlacedArray)
    optimised = hidden.__dask_optimize__(hidden.__dask_graph__(), hidden.__dask_keys__())
    assert sorted(
        optimised.layers[n].annotations["workers"][0] for n in optimised.layers if n.startswith("_gat_block")
    ) == sorted(holders)
    placed = client.persist(hidden)
    distributed.wait(placed)
    who = client.who_has(placed)
    assert [who[k[0]][0] for k in placed.__dask_keys__()] == holders
    graph = rv.GraphStructure.from_edge_index(edges, num_nodes)
    np.testing.assert_allclose(placed.compute(), layer.compute(x.compute(), graph).values, rtol=1e-5, atol=1e-6)


def test_uninitialised_layer_is_initialised_on_the_client() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 7), dtype=np.float32)
    edges = community_graph(200, 900, rng)
    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 3})
    assert layer.get_weights() == {}
    result = rd.graph_attention(layer, da.from_array(x, chunks=50), edges)
    assert layer.get_weights()["lin.weight"].shape == (6, 7)  # fixed before anything was shipped
    expected = layer.compute(x, rv.GraphStructure.from_edge_index(edges, 200)).values
    np.testing.assert_allclose(result.compute(scheduler="sync"), expected, rtol=1e-5, atol=1e-6)


def test_no_task_needs_all_of_x() -> None:
    rng = np.random.default_rng(6)
    x = da.from_array(rng.standard_normal((400, 4), dtype=np.float32), chunks=50)
    result = rd.graph_attention(rv.GraphAttention({"num_heads": 1, "head_dim": 2}), x, community_graph(400, 3000, rng))
    graph = dict(result.__dask_graph__())
    x_keys = {key for key in graph if isinstance(key, tuple) and key[0] == x.name}
    assert len(x_keys) == 8
    deps, _ = dask.core.get_deps(graph)
    assert max(len(d & x_keys) for d in deps.values()) == 1


def test_halo_rows_counts_distinct_rows_per_block_pair() -> None:
    rng = np.random.default_rng(7)
    edges = community_graph(300, 2000, rng)
    chunks = (70, 100, 30, 100)
    bounds = np.cumsum((0, *chunks))
    counts = rd.halo_rows(edges, chunks)
    block = np.searchsorted(bounds[1:], edges, side="right")
    for b in range(4):
        sources = set(edges[0][block[1] == b].tolist())
        for c in range(4):
            want = 0 if b == c else sum(bounds[c] <= s < bounds[c + 1] for s in sources)
            assert counts[b, c] == want


def test_graph_attention_refuses_bad_input() -> None:
    x = np.ones((10, 3), dtype=np.float32)
    edges = np.array([[0, 1], [1, 2]])
    with pytest.raises(rv.InvalidInputError, match=r"ruvector\.dask\.batch"):
        rd.graph_attention(rv.DotProductAttention(), x, edges)
    with pytest.raises(rv.InvalidInputError, match=r"\[2, E\]"):
        rd.graph_attention(rv.GraphAttention(), x, edges.T.copy()[:, :1].T)
    with pytest.raises(rv.InvalidInputError, match="integers"):
        rd.graph_attention(rv.GraphAttention(), x, edges.astype(np.float32))
    with pytest.raises(rv.InvalidInputError, match="node features"):
        rd.graph_attention(rv.GraphAttention(), x[0], edges)
    with pytest.raises(rv.InvalidInputError, match="one row per edge"):
        rd.graph_attention(rv.GraphAttention(edge_dim=2), x, edges, edge_features=np.ones((3, 2), np.float32))
    with pytest.raises(rv.InvalidInputError, match="outside"):
        rd.graph_attention(rv.GraphAttention(), x, np.array([[0, 10], [1, 2]])).compute(scheduler="sync")
    layer = rv.GraphAttention(in_features=4)
    with pytest.raises(rv.InvalidInputError):
        rd.graph_attention(layer, x, edges)  # x has 3 columns: refused here, not on a worker


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")  # NumPy inputs travel in the graph
def test_a_worker_killed_mid_computation_costs_a_recomputation_not_the_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(8)
    num_nodes = 20000
    edges = community_graph(num_nodes, 200000, rng)
    x = rng.standard_normal((num_nodes, 32), dtype=np.float32)
    conv1 = rv.GraphAttention({"num_heads": 4, "head_dim": 8}, in_features=32)
    conv2 = rv.GraphAttention({"num_heads": 4, "head_dim": 8}, in_features=32)
    graph = rv.GraphStructure.from_edge_index(edges, num_nodes)
    expected = conv2.compute(conv1.compute(x, graph).values, graph).values
    q = rng.standard_normal((400, 128, 32), dtype=np.float32)
    expected_batch = single_process_batch(rv.DotProductAttention(), q, q, q)

    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        start = time.perf_counter()
        x_blocks = da.from_array(x, chunks=1000)  # 20 row blocks: several tasks per worker
        out = rd.graph_attention(conv2, rd.graph_attention(conv1, x_blocks, edges), edges)
        q_blocks = da.from_array(q, chunks=10)
        batch = rd.batch(rv.DotProductAttention(), q_blocks, q_blocks, q_blocks)
        futures = client.compute([out, batch])
        victim = sorted(pids)[0]
        # wait until the victim holds results of this computation, then kill its process
        while not client.has_what().get(victim) and time.perf_counter() - start < 30:
            time.sleep(0.02)
        held = len(client.has_what().get(victim, ()))
        done_before = [f.done() for f in futures]
        psutil.Process(pids[victim]).kill()  # SIGKILL (TerminateProcess on Windows): no clean shutdown
        killed_at = time.perf_counter() - start
        distributed.wait(futures, timeout=120)  # fail, never hang, if the recomputation stalled
        values, batch_values = client.gather(futures)
        elapsed = time.perf_counter() - start
        pids_after = sorted(client.run(os.getpid).values())

    assert held > 0 and not any(done_before)
    assert pids[victim] not in pids_after and len(pids_after) == 2  # the nanny started a new process
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch_values, expected_batch, rtol=1e-6, atol=1e-6)
    with capsys.disabled():
        print(
            f"\n[fault] killed worker pid {pids[victim]} at {killed_at:.2f} s while it held {held} results; "
            f"computation finished at {elapsed:.2f} s, worker pids now {pids_after}; 2-layer GAT "
            f"[{num_nodes}x32] max |diff| {np.abs(values - expected).max():.2e}, batch "
            f"{batch_values.shape} max |diff| {np.abs(batch_values - expected_batch).max():.2e}"
        )

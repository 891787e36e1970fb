"""GraphAttention (GAT / GATv2) and GraphStructure (docs/contract.md §3–§5): against a float64 NumPy
reference on every SIMD backend, against PyG's GATConv / GATv2Conv (skipped without
torch_geometric), error paths, laziness, threads, pickling, batch and async."""

from __future__ import annotations

import asyncio
import pickle
import threading

import numpy as np
import pytest
from conftest import randn
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ruvector as rv

# ---------------------------------------------------------------------------------------------
# Independent reference: plain NumPy in float64, PyG's semantics written out.


def _with_self_loops(src, dst, n, edge_attr):
    keep = src != dst
    src, dst = src[keep], dst[keep]
    loops = np.arange(n)
    if edge_attr is not None:
        edge_attr = edge_attr[keep]
        total = np.zeros((n, edge_attr.shape[1]))
        np.add.at(total, dst, edge_attr)
        count = np.bincount(dst, minlength=n)[:, None]
        loop_attr = total / np.maximum(count, 1)  # mean of incoming edges, zeros for none
        edge_attr = np.concatenate([edge_attr, loop_attr])
    return np.concatenate([src, loops]), np.concatenate([dst, loops]), edge_attr


def _leaky(v, slope):
    return np.where(v > 0, v, slope * v)


def gat_reference(
    x, edges, weights, *, heads, channels, concat=True, slope=0.2, add_self_loops=True, edge_attr=None, variant="gat"
):
    """values [N, H·C or C], coefficients [E', H], edges [E', 2] — PyG's order."""
    x = np.asarray(x, np.float64)
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    n = x.shape[0]
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    src, dst = edges[:, 0], edges[:, 1]
    ea = None if edge_attr is None else np.asarray(edge_attr, np.float64).reshape(len(src), -1)
    if add_self_loops:
        src, dst, ea = _with_self_loops(src, dst, n, ea)
    h, c = heads, channels
    if variant == "gat":
        xs = (x @ w["lin.weight"].T).reshape(n, h, c)
        a_src = (xs * w["att_src"]).sum(-1)
        a_dst = (xs * w["att_dst"]).sum(-1)
        score = a_src[src] + a_dst[dst]
        if ea is not None:
            score = score + ((ea @ w["lin_edge.weight"].T).reshape(-1, h, c) * w["att_edge"]).sum(-1)
        score = _leaky(score, slope)
    else:
        xs = (x @ w["lin_l.weight"].T + w.get("lin_l.bias", 0.0)).reshape(n, h, c)
        xd = (x @ w["lin_r.weight"].T + w.get("lin_r.bias", 0.0)).reshape(n, h, c)
        t = xs[src] + xd[dst]
        if ea is not None:
            t = t + (ea @ w["lin_edge.weight"].T).reshape(-1, h, c)
        score = (_leaky(t, slope) * w["att"]).sum(-1)
    alpha = np.zeros_like(score)
    for node in np.unique(dst):
        sel = dst == node
        e = np.exp(score[sel] - score[sel].max(axis=0))
        alpha[sel] = e / e.sum(axis=0)
    out = np.zeros((n, h, c))
    np.add.at(out, dst, alpha[:, :, None] * xs[src])
    out = out.reshape(n, h * c) if concat else out.mean(axis=1)
    if "bias" in w:
        out = out + w["bias"]
    return out, alpha, np.stack([src, dst], axis=1)


def random_edges(rng, n, e):
    return rng.integers(0, n, size=(e, 2), dtype=np.int64)


def layer_for(heads, channels, **kwargs):
    return rv.GraphAttention({"num_heads": heads, "head_dim": channels, "seed": 7}, **kwargs)


def check(out, ref, tol=3e-5):
    values, alpha, edges = ref
    assert out.values.dtype == np.float32
    np.testing.assert_allclose(out.values, values, rtol=tol, atol=tol)
    if out.weights is not None:
        np.testing.assert_allclose(out.weights, alpha, rtol=tol, atol=tol)
        np.testing.assert_array_equal(out.metadata["edges"], edges)


# ---------------------------------------------------------------------------------------------
# Numbers on every backend


CASES = [  # (N, E, F, H, C)
    (1, 0, 3, 1, 1),
    (2, 3, 4, 1, 5),
    (7, 20, 5, 3, 4),
    (30, 120, 16, 8, 16),
    (50, 400, 9, 2, 24),
    (64, 300, 32, 4, 8),
]


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
@pytest.mark.parametrize(("n", "e", "f", "h", "c"), CASES)
def test_matches_numpy_reference(backend, rng, variant, n, e, f, h, c):
    x, edges = randn(rng, n, f), random_edges(rng, n, e)
    for concat in (True, False):
        layer = layer_for(h, c, variant=variant, concat=concat)
        out = layer.compute(x, edges)
        check(out, gat_reference(x, edges, layer.get_weights(), heads=h, channels=c, concat=concat, variant=variant))


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
@pytest.mark.parametrize("add_self_loops", [True, False])
def test_edge_features_self_loops_duplicates(backend, rng, variant, add_self_loops):
    n, f, h, c, d = 12, 6, 4, 8, 3
    x = randn(rng, n, f)
    edges = np.concatenate([random_edges(rng, n, 40), [[3, 3], [3, 3], [5, 5], [1, 2], [1, 2], [0, 2]]])
    edges[edges[:, 1] == 11, 1] = 10  # node 11: no incoming edges
    ea = randn(rng, len(edges), d)
    graph = rv.GraphStructure(edges, n, edge_features=ea)
    layer = layer_for(h, c, variant=variant, edge_dim=d, add_self_loops=add_self_loops, negative_slope=0.1)
    ref = gat_reference(
        x,
        edges,
        layer.get_weights() or _init(layer, f),
        heads=h,
        channels=c,
        slope=0.1,
        add_self_loops=add_self_loops,
        edge_attr=ea,
        variant=variant,
    )
    check(layer.compute(x, graph), ref)


def _init(layer, f):
    layer.compute(np.zeros((1, f), np.float32), [])
    return layer.get_weights()


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_large_graph_parallel_path(backend, rng, variant):
    # Enough edges for many tasks on the pool, a hub node and isolated ones.
    n, e, f, h, c = 3000, 40000, 24, 4, 16
    x, edges = randn(rng, n, f), random_edges(rng, n, e)
    edges[:2000, 1] = 17  # a hub with ~2000 incoming edges
    edges[edges[:, 1] >= n - 50, 1] = 0  # the last 50 nodes receive nothing
    layer = layer_for(h, c, variant=variant, add_self_loops=False)
    out = layer.compute(x, rv.GraphStructure(edges, n))
    check(out, gat_reference(x, edges, layer.get_weights(), heads=h, channels=c, add_self_loops=False, variant=variant))
    np.testing.assert_allclose(out.values[-50:], np.broadcast_to(layer.get_weights()["bias"], (50, h * c)))


def test_backends_agree(rng):
    x, edges = randn(rng, 200, 32), random_edges(rng, 200, 2000)
    results = {}
    for name in rv._native._available_backends():
        rv.set_simd_backend(name)
        try:
            for variant in ("gat", "gatv2"):
                results[name, variant] = layer_for(8, 16, variant=variant).compute(x, edges).values
        finally:
            rv.set_simd_backend("auto")
    for (_, variant), values in results.items():
        np.testing.assert_allclose(values, results["scalar", variant], rtol=1e-5, atol=1e-6)


def test_without_weights_same_values(backend, rng):
    x, edges = randn(rng, 40, 8), random_edges(rng, 40, 200)
    for variant in ("gat", "gatv2"):
        layer = layer_for(2, 8, variant=variant)
        full = layer.compute(x, edges)
        light = layer.compute(x, edges, need_weights=False)
        assert light.weights is None and "edges" not in light.metadata
        np.testing.assert_array_equal(light.values, full.values)


def test_isolated_nodes_and_empty_graphs(backend, rng):
    x = randn(rng, 5, 4)
    layer = layer_for(2, 3, add_self_loops=False)
    out = layer.compute(x, np.zeros((0, 2), np.int64))
    np.testing.assert_array_equal(out.values, np.broadcast_to(layer.get_weights()["bias"], (5, 6)))
    assert out.weights.shape == (0, 2) and out.metadata["edges"].shape == (0, 2)
    # only self-loops: each node attends to itself with coefficient 1
    looped = layer_for(2, 3, variant="gatv2", in_features=4)
    out = looped.compute(x, [])
    w = looped.get_weights()
    np.testing.assert_allclose(out.values, x @ w["lin_l.weight"].T + w["lin_l.bias"] + w["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.weights, np.ones((5, 2), np.float32))
    # no nodes at all
    empty = layer_for(2, 3, in_features=4).compute(np.zeros((0, 4), np.float32), [])
    assert empty.values.shape == (0, 6) and empty.weights.shape == (0, 2)


def test_nan_propagates_to_receivers_only(backend, rng):
    x, edges = randn(rng, 6, 4), np.array([[0, 1], [1, 2], [3, 4], [4, 5]])
    x[0, 2] = np.nan
    for variant in ("gat", "gatv2"):
        out = layer_for(2, 4, variant=variant).compute(x, edges).values
        assert np.isnan(out[[0, 1]]).all()  # node 0 itself (self-loop) and its receiver
        assert np.isfinite(out[2:]).all()


def test_metadata_and_repr(rng):
    out = layer_for(3, 2, variant="gatv2").compute(randn(rng, 4, 5), [(0, 1), (1, 1), (2, 3)])
    md = out.metadata
    assert md["attention_type"] == "graph"
    assert (md["num_nodes"], md["num_edges"], md["num_heads"]) == (4, 3, 3)
    assert md["variant"] == "gatv2" and md["concat"] is True
    assert md["simd_backend"] == rv.get_simd_backend()
    # the given self-loop is replaced: 2 ordinary edges, then one self-loop per node
    np.testing.assert_array_equal(md["edges"], [[0, 1], [2, 3], [0, 0], [1, 1], [2, 2], [3, 3]])
    assert out.weights.shape == (6, 3)
    assert "graph" in repr(out)
    layer = rv.GraphAttention()
    assert "GraphAttention(variant='gat'" in repr(layer) and "in_features=None" in repr(layer)


# ---------------------------------------------------------------------------------------------
# GraphStructure


def test_graph_structure_forms_agree(rng):
    edges = random_edges(rng, 10, 30)
    feats = randn(rng, 30, 2)
    graphs = [
        rv.GraphStructure(edges, 10, edge_features=feats),
        rv.GraphStructure([tuple(e) for e in edges.tolist()], 10, edge_features=feats.tolist()),
        rv.GraphStructure(edges.astype(np.int32), np.int64(10), edge_features=feats.astype(np.float64)),
        rv.GraphStructure.from_edge_index(np.ascontiguousarray(edges.T), 10, edge_features=feats),
        rv.GraphStructure.from_edge_index(edges.T, 10, edge_features=feats),  # non-contiguous view
        rv.GraphStructure.from_edge_index(ei=edges.T, num_nodes=10, edge_features=feats),  # the contract's name
        rv.GraphStructure.from_edge_index(edge_index=edges.T, num_nodes=10, edge_features=feats),  # PyG's
    ]
    for g in graphs:
        assert (g.num_nodes, g.num_edges, g.edge_feature_dim) == (10, 30, 2)
        np.testing.assert_array_equal(g.edges, edges)
        np.testing.assert_array_equal(g.edge_index, edges.T)
        np.testing.assert_array_equal(g.edge_features, feats)
    x = randn(rng, 10, 3)
    layer = layer_for(2, 4, edge_dim=2)
    first = layer.compute(x, graphs[0]).values
    for g in graphs[1:]:
        np.testing.assert_array_equal(layer.compute(x, g).values, first)


def test_graph_structure_details(rng):
    g = rv.GraphStructure([(0, 1), (1, 1)], 3)
    assert g.has_self_loops and g.edge_features is None and g.edge_feature_dim is None
    assert repr(g) == "GraphStructure(num_nodes=3, num_edges=2)"
    assert not rv.GraphStructure([(0, 1)], 2).has_self_loops
    one_d = rv.GraphStructure([(0, 1), (1, 0)], 2, edge_features=np.array([0.5, 2.0]))  # [E] → [E, 1]
    assert one_d.edge_features.shape == (2, 1)
    empty = rv.GraphStructure([], 0)
    assert (empty.num_nodes, empty.num_edges) == (0, 0) and empty.edges.shape == (0, 2)
    g2 = pickle.loads(pickle.dumps(rv.GraphStructure(random_edges(rng, 5, 9), 5, edge_features=randn(rng, 9, 3))))
    assert g2.num_edges == 9 and g2.edge_features.shape == (9, 3)
    torch = pytest.importorskip("torch")
    ei = torch.randint(0, 6, (2, 15))
    np.testing.assert_array_equal(rv.GraphStructure.from_edge_index(ei, 6).edge_index, ei.numpy())


@pytest.mark.parametrize(
    ("edges", "n", "match"),
    [
        ([(0, 1), (-1, 2)], 3, "edge 1 has a negative source"),
        ([(0, 1), (2, 3)], 3, "edge 1 has target 3, out of range for num_nodes=3"),
        (np.array([[0.0, 1.0]]), 2, "integer node indices.*astype"),
        (np.array([[True, False]]), 2, "integer node indices"),
        (np.array([0, 1, 2]), 3, r"\[E, 2\]"),
        (np.zeros((2, 3), np.int64), 3, "from_edge_index"),
        (None, 3, "edges must be"),
        ("01", 3, "edges must be"),
        ({"a": 1}, 3, "edges must be"),
        ([(0, 1), (1,)], 3, "edges"),
        (np.array([[2**63 + 5, 0]], np.uint64), 3, "too large"),
        ([(0, 1)], -1, "num_nodes must be >= 0"),
        ([(0, 1)], 2.5, "num_nodes must be an integer"),
        ([(0, 1)], None, "num_nodes must be an integer"),
    ],
)
def test_graph_structure_errors(edges, n, match):
    with pytest.raises(rv.InvalidInputError, match=match):
        rv.GraphStructure(edges, n)


def test_requests_too_large_to_allocate():
    with pytest.raises(rv.InvalidInputError, match="num_nodes"):
        rv.GraphStructure([], 10**15)
    with pytest.raises(rv.InvalidInputError, match="transformed node features"):
        rv.GraphAttention({"num_heads": 1000, "head_dim": 1000}).compute(np.ones((100_000, 2), np.float32), [])
    with pytest.raises(rv.InvalidConfigError, match="too large"):
        rv.GraphAttention({"num_heads": 100_000, "head_dim": 100_000})


def test_graph_structure_feature_and_layout_errors(rng):
    with pytest.raises(rv.DimensionMismatchError, match="edge_features has 2 rows for 3 edges") as info:
        rv.GraphStructure([(0, 1), (1, 2), (2, 0)], 3, edge_features=np.ones((2, 4), np.float32))
    assert (info.value.expected, info.value.actual) == (3, 2)
    with pytest.raises(rv.InvalidInputError, match="edge_features"):
        rv.GraphStructure([(0, 1)], 3, edge_features="abc")
    with pytest.raises(rv.DimensionMismatchError, match=r"\[2, E\]"):
        rv.GraphStructure.from_edge_index(np.zeros((3, 4), np.int64), 5)
    with pytest.raises(rv.InvalidInputError, match="edge 0 has target 9"):
        rv.GraphStructure.from_edge_index(np.array([[0], [9]]), 5)


@settings(max_examples=60, deadline=None)
@given(
    edges=hnp.arrays(
        dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.uint64, np.float32, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
    ),
    n=st.integers(-2, 6),
)
def test_malformed_edges_never_crash(edges, n):
    try:
        g = rv.GraphStructure(edges, n)
    except rv.InvalidInputError:
        return
    assert g.num_nodes == n and g.edges.shape == (g.num_edges, 2)
    out = layer_for(1, 2).compute(np.ones((n, 3), np.float32), g)
    assert np.isfinite(out.values).all()


# ---------------------------------------------------------------------------------------------
# Layer errors, configuration, weights


def test_layer_input_errors(rng):
    layer = layer_for(2, 4, in_features=3)
    x, edges = randn(rng, 5, 3), [(0, 1), (2, 3)]
    with pytest.raises(rv.DimensionMismatchError, match="node_features has 4 columns, but this layer takes 3") as info:
        layer.compute(randn(rng, 5, 4), edges)
    assert (info.value.expected, info.value.actual) == (3, 4)
    with pytest.raises(rv.DimensionMismatchError, match="node_features has 5 rows, but the graph has 6 nodes"):
        layer.compute(x, rv.GraphStructure(edges, 6))
    with pytest.raises(rv.InvalidInputError, match="edge 1 has target 7, out of range for num_nodes=5"):
        layer.compute(x, [(0, 1), (2, 7)])
    with pytest.raises(rv.InvalidInputError, match="negative source"):
        layer.compute(x, np.array([[-3, 1]]))
    with pytest.raises(rv.InvalidInputError, match=r"edge_dim=None.*edge_dim=2"):
        layer.compute(x, rv.GraphStructure(edges, 5, edge_features=randn(rng, 2, 2)))
    with pytest.raises(rv.DimensionMismatchError, match="edge_features has 2 columns, but this layer has edge_dim=3"):
        layer_for(2, 4, edge_dim=3).compute(x, rv.GraphStructure(edges, 5, edge_features=randn(rng, 2, 2)))
    for bad in (None, "x", {"a": 1}, [[1, 2], [3]], np.ones((5, 3), np.complex64)):
        with pytest.raises(rv.InvalidInputError, match="node_features"):
            layer.compute(bad, edges)
    for bad in (None, "x", {"a": 1}, 3.5):
        with pytest.raises(rv.InvalidInputError, match="graph"):
            layer.compute(x, bad)
    with pytest.raises(rv.DimensionMismatchError, match="2-D"):
        layer.compute(np.ones(5, np.float32), edges)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "gcn"}, "variant"),
        ({"edge_dim": 0}, "edge_dim"),
        ({"in_features": -1}, "in_features"),
        ({"negative_slope": float("nan")}, "negative_slope"),
        ({"in_features": "3"}, "in_features"),
    ],
)
def test_layer_config_errors(kwargs, match):
    with pytest.raises(rv.InvalidConfigError, match=match):
        rv.GraphAttention(**kwargs)


def test_config_forms():
    a = rv.GraphAttention({"num_heads": 2, "head_dim": 3}, variant="GATv2")
    b = rv.GraphAttention(rv.AttentionConfig(num_heads=2, head_dim=3), variant="gatv2")
    assert a.variant == b.variant == "gatv2" and a.num_heads == 2 and a.head_dim == 3 and a.out_features == 6
    assert rv.GraphAttention(concat=False, **{"config": {"num_heads": 4, "head_dim": 5}}).out_features == 5
    with pytest.raises(rv.InvalidConfigError):
        rv.GraphAttention({"heads": 2})


def test_weight_names_and_shapes():
    gat = layer_for(4, 8, in_features=5, edge_dim=3).get_weights()
    assert {k: v.shape for k, v in gat.items()} == {
        "lin.weight": (32, 5),
        "att_src": (1, 4, 8),
        "att_dst": (1, 4, 8),
        "lin_edge.weight": (32, 3),
        "att_edge": (1, 4, 8),
        "bias": (32,),
    }
    v2 = layer_for(4, 8, in_features=5, variant="gatv2", concat=False).get_weights()
    assert {k: v.shape for k, v in v2.items()} == {
        "lin_l.weight": (32, 5),
        "lin_l.bias": (32,),
        "lin_r.weight": (32, 5),
        "lin_r.bias": (32,),
        "att": (1, 4, 8),
        "bias": (8,),
    }
    nobias = rv.GraphAttention({"num_heads": 2, "head_dim": 2, "use_bias": False}, in_features=3, variant="gatv2")
    assert set(nobias.get_weights()) == {"lin_l.weight", "lin_r.weight", "att"}
    for w in (gat, v2):
        assert all(v.dtype == np.float32 for v in w.values())


def test_glorot_init_from_seed():
    w = layer_for(8, 16, in_features=128).get_weights()
    bound = np.sqrt(6 / (128 + 128))
    assert np.abs(w["lin.weight"]).max() <= bound and np.abs(w["lin.weight"]).max() > 0.9 * bound
    assert np.abs(w["lin.weight"].mean()) < 0.01 and w["lin.weight"].std() > 0.5 * bound
    assert np.abs(w["att_src"]).max() <= np.sqrt(6 / (8 + 16))
    assert not np.array_equal(w["att_src"], w["att_dst"])
    np.testing.assert_array_equal(w["bias"], 0)
    same = layer_for(8, 16, in_features=128).get_weights()
    other = rv.GraphAttention({"num_heads": 8, "head_dim": 16, "seed": 8}, in_features=128).get_weights()
    np.testing.assert_array_equal(same["lin.weight"], w["lin.weight"])
    assert not np.array_equal(other["lin.weight"], w["lin.weight"])


def test_lazy_in_features(rng):
    layer = layer_for(2, 3)
    assert layer.in_features is None and layer.get_weights() == {}
    first = layer.compute(randn(rng, 4, 6), [(0, 1)])
    assert layer.in_features == 6 and layer.get_weights()["lin.weight"].shape == (6, 6)
    with pytest.raises(rv.DimensionMismatchError, match="takes 6"):
        layer.compute(randn(rng, 4, 5), [(0, 1)])
    # the lazily drawn weights equal those of a layer given in_features up front
    eager = layer_for(2, 3, in_features=6)
    for k, v in eager.get_weights().items():
        np.testing.assert_array_equal(layer.get_weights()[k], v)
    assert first.values.shape == (4, 6)


def test_set_weights(rng):
    layer = layer_for(2, 4, variant="gatv2")
    with pytest.raises(rv.InvalidInputError, match=r"lin_l\.weight and lin_r\.weight"):
        layer.set_weights({"att": np.ones((1, 2, 4), np.float32)})
    w = {k: v * 2 + 0.1 for k, v in layer_for(2, 4, variant="gatv2", in_features=5).get_weights().items()}
    layer.set_weights(w)  # fixes in_features = 5
    assert layer.in_features == 5
    for k, v in w.items():
        np.testing.assert_array_equal(layer.get_weights()[k], v)
    before = layer.get_weights()
    bad = [
        ({"lin.weight": np.ones((8, 5))}, rv.InvalidInputError, "unknown weight 'lin.weight'"),
        ({"att": np.ones((1, 2, 5))}, rv.DimensionMismatchError, r"att has shape \[1, 2, 5\], expected \[1, 2, 4\]"),
        ({"att": np.ones((2, 2, 4))}, rv.DimensionMismatchError, r"\[1, H, C\]"),
        ({"lin_l.weight": np.ones((8, 6))}, rv.DimensionMismatchError, "takes 5 input features"),
        ({"bias": np.ones(7)}, rv.DimensionMismatchError, r"bias has shape \[7\], expected \[8\]"),
        ({"bias": "abc"}, rv.InvalidInputError, "bias"),
        ({"att": np.ones((1, 2, 4)), "nope": np.ones(1)}, rv.InvalidInputError, "unknown weight 'nope'"),
        ([1, 2], rv.InvalidInputError, "dict"),
    ]
    for weights, error, match in bad:
        with pytest.raises(error, match=match):
            layer.set_weights(weights)
        for k, v in before.items():  # a rejected set_weights changes nothing
            np.testing.assert_array_equal(layer.get_weights()[k], v)
    # partial update; [H, C] and [1, n] forms are accepted too
    layer.set_weights({"att": np.full((2, 4), 0.5), "bias": np.zeros((1, 8))})
    np.testing.assert_array_equal(layer.get_weights()["att"], np.full((1, 2, 4), 0.5, np.float32))
    x, edges = randn(rng, 6, 5), random_edges(rng, 6, 15)
    check(layer.compute(x, edges), gat_reference(x, edges, layer.get_weights(), heads=2, channels=4, variant="gatv2"))


def test_pickle_round_trip(rng):
    x, edges = randn(rng, 8, 5), random_edges(rng, 8, 20)
    for layer in (
        layer_for(2, 3, variant="gatv2", concat=False, negative_slope=0.3),
        layer_for(2, 3, in_features=5, edge_dim=2, add_self_loops=False),
    ):
        graph = rv.GraphStructure(edges, 8, edge_features=randn(rng, 20, 2) if layer.edge_dim else None)
        lazy = pickle.loads(pickle.dumps(layer))
        assert lazy.in_features == layer.in_features and type(lazy) is rv.GraphAttention
        first = layer.compute(x, graph)
        again = pickle.loads(pickle.dumps(layer))
        assert (again.variant, again.concat, again.negative_slope, again.add_self_loops, again.edge_dim) == (
            layer.variant,
            layer.concat,
            layer.negative_slope,
            layer.add_self_loops,
            layer.edge_dim,
        )
        np.testing.assert_array_equal(again.compute(x, graph).values, first.values)
        np.testing.assert_array_equal(lazy.compute(x, graph).values, first.values)  # same seed, same weights


# ---------------------------------------------------------------------------------------------
# Threads, batch, async


def test_concurrent_first_calls_agree(rng):
    layer = layer_for(4, 8, variant="gatv2")
    x, edges = randn(rng, 300, 16), rv.GraphStructure(random_edges(rng, 300, 3000), 300)
    results = [None] * 8

    def work(i):
        results[i] = layer.compute(x, edges).values

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_set_weights_while_computing(rng):
    layer = layer_for(2, 8, in_features=16)
    x, graph = randn(rng, 500, 16), rv.GraphStructure(random_edges(rng, 500, 5000), 500)
    old = layer.compute(x, graph).values
    new_weights = {k: v + 0.5 for k, v in layer.get_weights().items()}
    other = layer_for(2, 8, in_features=16)
    other.set_weights(new_weights)
    new = other.compute(x, graph).values
    seen = []

    def work():
        for _ in range(10):
            seen.append(layer.compute(x, graph).values)

    t = threading.Thread(target=work)
    t.start()
    layer.set_weights(new_weights)
    t.join()
    for values in seen:  # every call saw one whole set of weights
        assert np.array_equal(values, old) or np.array_equal(values, new)


def test_compute_batch(rng):
    layer = layer_for(2, 4, variant="gatv2")
    feats = [randn(rng, n, 3) for n in (5, 9, 1, 7)]
    graphs = [random_edges(rng, n, 2 * n) for n in (5, 9, 1, 7)]
    calls = []
    outs = layer.compute_batch(
        feats, graphs, batch_config={"max_batch_size": 3}, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(3, 4), (4, 4)]
    for f, g, out in zip(feats, graphs, outs, strict=True):
        np.testing.assert_allclose(out.values, layer.compute(f, g).values, rtol=0, atol=0)
    # [B, N, F] features with one shared GraphStructure
    stacked, graph = randn(rng, 3, 6, 3), rv.GraphStructure(random_edges(rng, 6, 10), 6)
    outs = layer.compute_batch(stacked, graph, need_weights=False)
    assert all(o.weights is None for o in outs)
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out.values, layer.compute(stacked[i], graph).values)


def test_compute_batch_errors(rng):
    layer = layer_for(2, 4, in_features=3)
    feats = [randn(rng, 4, 3), randn(rng, 4, 3), randn(rng, 4, 3)]
    graphs = [[(0, 1)], [(0, 9)], [(1, 2)]]
    with pytest.raises(rv.InvalidInputError, match="item 1: edge 0 has target 9"):
        layer.compute_batch(feats, graphs)
    with pytest.raises(rv.DimensionMismatchError, match="item 2: node_features has 2 columns"):
        layer.compute_batch([feats[0], feats[1], randn(rng, 4, 2)], [[(0, 1)]] * 3)
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        layer.compute_batch(feats, graphs[:2])
    lazy = layer_for(2, 4)  # the first item fixes in_features before any item runs
    with pytest.raises(rv.DimensionMismatchError, match="item 1"):
        lazy.compute_batch([randn(rng, 3, 2), randn(rng, 3, 5)], [[], []])


def test_async(rng):
    layer = layer_for(2, 4)
    x, graph = randn(rng, 20, 6), rv.GraphStructure(random_edges(rng, 20, 60), 20)
    expected = layer.compute(x, graph).values

    async def main():
        single = await layer.compute_async(x, graph)
        many = await asyncio.gather(*(layer.compute_async(x, graph, need_weights=False) for _ in range(4)))
        batch = await layer.compute_batch_async([x, x], [graph, graph])
        with pytest.raises(rv.InvalidInputError, match="out of range"):
            await layer.compute_async(x, [(0, 99)])
        return single, many, batch

    single, many, batch = asyncio.run(main())
    for out in [single, *many, *batch]:
        np.testing.assert_array_equal(out.values, expected)


# ---------------------------------------------------------------------------------------------
# PyG parity (skipped without torch_geometric)


def _pyg():
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("torch_geometric.nn")
    return torch, nn


def _pyg_layer(nn, torch, variant, f, c, h, **kwargs):
    cls = nn.GATConv if variant == "gat" else nn.GATv2Conv
    conv = cls(f, c, heads=h, **kwargs)
    return conv.eval()


def _weights_of(conv):
    return {k: v.detach().numpy() for k, v in conv.state_dict().items()}


PYG_CASES = [  # heads, concat, edge_dim, add_self_loops
    (1, True, None, True),
    (8, True, None, True),
    (8, False, None, True),
    (1, False, 4, True),
    (8, True, 4, True),
    (8, True, 4, False),
    (3, False, None, False),
]


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
@pytest.mark.parametrize(("heads", "concat", "edge_dim", "add_self_loops"), PYG_CASES)
def test_matches_pyg(backend, rng, variant, heads, concat, edge_dim, add_self_loops):
    torch, nn = _pyg()
    torch.manual_seed(0)
    n, f, c = 40, 12, 16
    edges = random_edges(rng, n, 200)
    edges = np.concatenate([edges, edges[:10], [[4, 4], [4, 4], [9, 9]]])  # duplicates and self-loops
    edges[edges[:, 1] >= n - 3, 1] = 1  # isolated targets
    ea = randn(rng, len(edges), edge_dim) if edge_dim else None
    x = randn(rng, n, f)
    conv = _pyg_layer(
        nn,
        torch,
        variant,
        f,
        c,
        heads,
        concat=concat,
        edge_dim=edge_dim,
        add_self_loops=add_self_loops,
        negative_slope=0.15,
    )
    layer = rv.GraphAttention(
        {"num_heads": heads, "head_dim": c},
        variant=variant,
        concat=concat,
        edge_dim=edge_dim,
        add_self_loops=add_self_loops,
        negative_slope=0.15,
    )
    layer.set_weights(_weights_of(conv))  # PyG's own random initialisation
    with torch.no_grad():
        ref, (ref_edges, ref_alpha) = conv(
            torch.from_numpy(x),
            torch.from_numpy(edges.T.copy()),
            None if ea is None else torch.from_numpy(ea),
            return_attention_weights=True,
        )
    out = layer.compute(x, rv.GraphStructure(edges, n, edge_features=ea))
    np.testing.assert_allclose(out.values, ref.numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_array_equal(out.metadata["edges"], ref_edges.numpy().T)
    np.testing.assert_allclose(out.weights, ref_alpha.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_our_weights_in_pyg(rng, variant):
    torch, nn = _pyg()
    layer = rv.GraphAttention({"num_heads": 4, "head_dim": 8}, in_features=10, variant=variant)
    conv = _pyg_layer(nn, torch, variant, 10, 8, 4)
    conv.load_state_dict({k: torch.from_numpy(v) for k, v in layer.get_weights().items()})
    x, edges = randn(rng, 30, 10), random_edges(rng, 30, 100)
    with torch.no_grad():
        ref = conv(torch.from_numpy(x), torch.from_numpy(edges.T.copy())).numpy()
    np.testing.assert_allclose(layer.compute(x, edges).values, ref, rtol=1e-4, atol=2e-5)


def test_raw_edge_arrays_reuse_their_csr_only_when_equal(rng):
    # compute(x, edges) with a raw [E, 2] array keeps the CSR it built (PyG passes the same
    # edge_index every step); a call whose edges differ in any element must not reuse it.
    n = 2000
    x = randn(rng, n, 16)
    edges = rng.integers(0, n, size=(8000, 2))
    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 4}, in_features=16)
    first = layer.compute(x, edges)
    again = layer.compute(x, edges.copy())
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.metadata["edges"], first.metadata["edges"])

    edges[-1] = (edges[-1, 1], (edges[-1, 0] + 1) % n)  # one edge changed in place
    changed = layer.compute(x, edges)
    expected = layer.compute(x, rv.GraphStructure(edges, n))
    np.testing.assert_array_equal(changed.values, expected.values)
    np.testing.assert_array_equal(changed.metadata["edges"], expected.metadata["edges"])
    assert not np.array_equal(changed.values, first.values)

    inner = edges % (n - 1)  # the same edges on n - 1 and on n nodes: two graphs
    for nodes in (n - 1, n):
        raw = layer.compute(x[:nodes], inner)
        np.testing.assert_array_equal(raw.values, layer.compute(x[:nodes], rv.GraphStructure(inner, nodes)).values)
        assert raw.metadata["num_nodes"] == nodes

"""GraphAttention against PyG's GATConv / GATv2Conv themselves: every option combination they
allow (through from_pyg), bipartite inputs, targets=, a NeighborLoader-style mini-batch, and
the options' properties, pickling and refusals (docs/contract.md §9)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from ruvector import GraphAttention, GraphStructure, InvalidConfigError, InvalidInputError

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")
GATConv, GATv2Conv = pyg_nn.GATConv, pyg_nn.GATv2Conv

FILL = ("mean", "add", "max", "min", "mul", 0.5)
SIZES = ((1, 0), (9, 30), (40, 160), (120, 700))  # (nodes, edges)


def random_edges(rng, n_src, n_dst, e):
    """Random edges with duplicates, self-loops (i, i) and nodes without in-edges."""
    if e == 0 or n_src == 0 or n_dst == 0:
        return torch.zeros((2, 0), dtype=torch.long)
    src = rng.integers(0, n_src, e)
    dst = rng.integers(0, max(1, n_dst - 2), e)  # the last targets have no in-edges
    k = min(e // 5, n_src, n_dst)
    src[:k] = dst[:k] = np.arange(k) % max(1, min(n_src, n_dst))  # self-loops
    if e > 4:
        src[-2:], dst[-2:] = src[0], dst[0]  # a duplicate
    return torch.from_numpy(np.stack([src, dst]))


def combinations():
    """(variant, options) for every combination PyG's modules allow; fill_value only where it
    matters (edge features with self-loops added)."""
    out = []
    for variant, concat, loops, edge_dim, residual, bias, pair, bipartite, share in itertools.product(
        ("gat", "gatv2"),
        (True, False),
        (True, False),
        (None, 3),
        (False, True),
        (True, False),
        (False, True),
        (False, True),
        (False, True),
    ):
        if share and variant == "gat":
            continue
        fills = FILL if (edge_dim and loops) else ("mean",)
        for fill in fills:
            out.append(
                dict(
                    variant=variant,
                    concat=concat,
                    add_self_loops=loops,
                    edge_dim=edge_dim,
                    residual=residual,
                    bias=bias,
                    pair=pair,
                    bipartite=bipartite,
                    share_weights=share,
                    fill_value=fill,
                )
            )
    return out


COMBOS = combinations()


def make_module(c, f_src, f_dst, heads=2, channels=3):
    in_channels = (f_src, f_dst) if c["pair"] else f_src
    kwargs = dict(
        heads=heads,
        concat=c["concat"],
        add_self_loops=c["add_self_loops"],
        edge_dim=c["edge_dim"],
        fill_value=c["fill_value"],
        bias=c["bias"],
        residual=c["residual"],
        negative_slope=0.15,
        dropout=0.3,
    )
    if c["variant"] == "gatv2":
        module = GATv2Conv(in_channels, channels, share_weights=c["share_weights"], **kwargs)
    else:
        module = GATConv(in_channels, channels, **kwargs)
    with torch.no_grad():  # PyG zero-initialises the bias: make it count
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module.eval()


def run_both(module, layer, x, edge_index, edge_attr):
    with torch.no_grad():
        expected = module(x, edge_index, edge_attr).numpy()
    if isinstance(x, tuple):
        nodes = (x[0].shape[0], x[1].shape[0])
        inputs = (x[0].numpy(), x[1].numpy())
    else:
        nodes, inputs = x.shape[0], x.numpy()
    graph = GraphStructure.from_edge_index(edge_index.numpy(), nodes, None if edge_attr is None else edge_attr.numpy())
    return layer.compute(inputs, graph), expected, graph


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_every_option_combination_matches_pyg(backend, variant):
    rng = np.random.default_rng(7)
    torch.manual_seed(7)
    worst = 0.0
    tried = 0
    for index, c in enumerate(c for c in COMBOS if c["variant"] == variant):
        n, e = SIZES[index % len(SIZES)]
        f_src = 5
        f_dst = 5 if (c["share_weights"] or not (c["pair"] and c["bipartite"])) else 4
        module = make_module(c, f_src, f_dst)
        layer = GraphAttention.from_pyg(module)
        if c["bipartite"]:
            # as NeighborLoader's batches: at least as many sources as targets (PyG's string
            # fill_value needs every target below min(N_src, N_dst) when edge features are on)
            n_dst = max(1, n // 2) if c["edge_dim"] and c["add_self_loops"] else max(1, n + 3)
            x = (torch.randn(n, f_src), torch.randn(n_dst, f_dst))
            edge_index = random_edges(rng, n, min(n, n_dst) if c["edge_dim"] else n_dst, e)
        else:
            x = torch.randn(n, f_src)
            edge_index = random_edges(rng, n, n, e)
        edge_attr = torch.randn(edge_index.shape[1], 3) if c["edge_dim"] else None
        out, expected, _ = run_both(module, layer, x, edge_index, edge_attr)
        assert out.values.shape == expected.shape, c
        err = float(np.abs(out.values - expected).max()) if expected.size else 0.0
        assert err < 1e-4, (c, err)
        worst = max(worst, err)
        tried += 1
    assert tried > 100
    print(f"\n{variant} on {backend}: {tried} combinations, largest error {worst:.3g}")


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_attention_weights_match_pyg(backend, variant):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    module = make_module(
        dict(
            variant=variant,
            concat=True,
            add_self_loops=True,
            edge_dim=3,
            residual=False,
            bias=True,
            pair=True,
            bipartite=True,
            share_weights=False,
            fill_value="max",
        ),
        5,
        4,
    )
    x = (torch.randn(30, 5), torch.randn(12, 4))
    edge_index = random_edges(rng, 30, 12, 90)
    edge_attr = torch.randn(90, 3)
    with torch.no_grad():
        _, (ei, alpha) = module(x, edge_index, edge_attr, return_attention_weights=True)
    out = GraphAttention.from_pyg(module).compute(
        (x[0].numpy(), x[1].numpy()), GraphStructure.from_edge_index(edge_index.numpy(), (30, 12), edge_attr.numpy())
    )
    np.testing.assert_array_equal(out.metadata["edges"], ei.numpy().T)
    np.testing.assert_allclose(out.weights, alpha.numpy(), atol=2e-6)


def layer_for(variant="gat", **kwargs):
    return GraphAttention({"num_heads": 3, "head_dim": 4, "seed": 5}, in_features=6, variant=variant, **kwargs)


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("edge_dim", [None, 2])
def test_targets_are_rows_of_the_full_call(backend, variant, add_self_loops, edge_dim):
    rng = np.random.default_rng(11)
    # (a few targets of the largest graph renumber their sources through a hash table, the
    # others through a bitmap of all sources: both paths, every option)
    for n, e in ((1, 0), (25, 80), (300, 2000), (4000, 12000)):
        edges = np.asarray(random_edges(rng, n, n, e)).T.copy()
        features = rng.standard_normal((e, 2)).astype(np.float32) if edge_dim else None
        graph = GraphStructure(edges, n, features)
        layer = layer_for(variant, add_self_loops=add_self_loops, edge_dim=edge_dim, residual=True, fill_value="min")
        x = rng.standard_normal((n, 6)).astype(np.float32)
        full = layer.compute(x, graph)
        weight_of = {
            tuple(edge): w for edge, w in zip(full.metadata["edges"].tolist(), full.weights.tolist(), strict=True)
        }
        for targets in (np.array([0]), rng.integers(0, n, 7), rng.permutation(n), np.array([n - 1, 0, n - 1])):
            part = layer.compute(x, graph, targets=targets)
            np.testing.assert_array_equal(part.values, full.values[targets])  # bit for bit
            distinct = set(targets.tolist())
            expected_edges = sorted(tuple(ed) for ed in full.metadata["edges"].tolist() if ed[1] in distinct)
            got_edges = part.metadata["edges"].tolist()
            assert sorted(map(tuple, got_edges)) == expected_edges
            if len(set(map(tuple, got_edges))) == len(got_edges):  # no duplicate edges: one weight each
                for edge, w in zip(got_edges, part.weights.tolist(), strict=True):
                    assert w == weight_of[tuple(edge)]
            assert part.weights.shape == (len(expected_edges), 3)


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_targets_of_a_wide_layer_are_rows_of_the_full_call(backend, variant):
    # Several GEMM panels (H·C = 128), a bias per panel (GATv2's lin_l), thousands of targets
    # with repeats (their edges copied in parallel chunks, their source rows read in place
    # over many row blocks), and a few targets alone.
    rng = np.random.default_rng(23)
    n, e = 6000, 40000
    graph = GraphStructure(np.asarray(random_edges(rng, n, n, e)).T.copy(), n)
    layer = GraphAttention({"num_heads": 8, "head_dim": 16, "seed": 3}, in_features=64, variant=variant)
    x = rng.standard_normal((n, 64)).astype(np.float32)
    full = layer.compute(x, graph, need_weights=False).values
    for targets in (rng.integers(0, n, 3000), rng.integers(0, n, 5), np.arange(n)[::-1].copy()):
        part = layer.compute(x, graph, targets=targets, need_weights=False).values
        np.testing.assert_array_equal(part, full[targets])  # bit for bit


def test_targets_bipartite_and_pair(backend):
    rng = np.random.default_rng(2)
    layer = GraphAttention({"num_heads": 2, "head_dim": 3}, in_features=(5, 4), residual=True)
    xs, xd = rng.standard_normal((40, 5)).astype(np.float32), rng.standard_normal((15, 4)).astype(np.float32)
    graph = GraphStructure(np.asarray(random_edges(rng, 40, 15, 120)).T.copy(), (40, 15))
    full = layer.compute((xs, xd), graph)
    targets = np.array([14, 3, 3, 0, 9])
    np.testing.assert_array_equal(layer.compute((xs, xd), graph, targets=targets).values, full.values[targets])
    # a larger graph, where these few targets take the hash-table path
    xs, xd = rng.standard_normal((3000, 5)).astype(np.float32), rng.standard_normal((2000, 4)).astype(np.float32)
    graph = GraphStructure(np.asarray(random_edges(rng, 3000, 2000, 9000)).T.copy(), (3000, 2000))
    full = layer.compute((xs, xd), graph)
    for targets in (np.array([14, 3, 3, 0, 9]), np.array([1999, 0, 1500])):
        np.testing.assert_array_equal(layer.compute((xs, xd), graph, targets=targets).values, full.values[targets])


def test_targets_refused():
    layer = layer_for()
    x = np.ones((4, 6), np.float32)
    for bad in ([4], [-1], [[0, 1]], [0.5], np.array([True, False])):
        with pytest.raises(InvalidInputError):
            layer.compute(x, [(0, 1)], targets=np.asarray(bad))
    assert layer.compute(x, [(0, 1)], targets=np.array([], np.int64)).values.shape == (0, 12)


def test_bipartite_self_loops_as_pyg():
    """Given (i, i) edges are dropped and one loop added for each id below min(N_src, N_dst)."""
    layer = layer_for()
    xs, xd = np.ones((3, 6), np.float32), np.ones((5, 6), np.float32)
    out = layer.compute((xs, xd), GraphStructure([(1, 1), (2, 4), (0, 1)], (3, 5)))
    assert out.values.shape == (5, 12)
    assert out.metadata["edges"].tolist() == [[2, 4], [0, 1], [0, 0], [1, 1], [2, 2]]
    assert np.all(out.values[3] == layer.get_weights()["bias"])  # no in-edge, no loop: bias only


def test_graph_structure_bipartite():
    g = GraphStructure([(5, 0), (1, 2)], num_nodes=(6, 3))
    assert g.num_nodes == (6, 3)
    assert "num_nodes=(6, 3)" in repr(g)
    g2 = pickle.loads(pickle.dumps(g))
    assert g2.num_nodes == (6, 3)
    np.testing.assert_array_equal(g2.edges, g.edges)
    assert GraphStructure.from_edge_index(np.array([[5, 1], [0, 2]]), (6, 3)).num_nodes == (6, 3)
    with pytest.raises(InvalidInputError):
        GraphStructure([(0, 3)], (6, 3))  # target out of range
    with pytest.raises(InvalidInputError):
        GraphStructure([(6, 0)], (6, 3))  # source out of range
    with pytest.raises(InvalidInputError):  # a bipartite graph needs (x_src, x_dst)
        layer_for().compute(np.ones((6, 6), np.float32), g)


def test_options_are_properties_that_round_trip():
    layer = GraphAttention(
        {"num_heads": 2, "head_dim": 3},
        in_features=(5, 4),
        variant="gatv2",
        fill_value="mul",
        residual=True,
        edge_dim=2,
    )
    assert layer.in_features == (5, 4)
    assert (layer.fill_value, layer.residual, layer.share_weights) == ("mul", True, False)
    assert "fill_value='mul'" in repr(layer) and "residual=True" in repr(layer) and "(5, 4)" in repr(layer)
    rebuilt = GraphAttention(layer.config, **{k: getattr(layer, k) for k in GraphAttention._options})
    rebuilt.set_weights(layer.get_weights())
    copy = pickle.loads(pickle.dumps(layer))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 5)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32))
    graph = GraphStructure([(0, 1), (6, 3), (2, 2)], (7, 4), np.ones((3, 2), np.float32))
    for other in (rebuilt, copy):
        assert all(getattr(other, k) == getattr(layer, k) for k in GraphAttention._options)
        np.testing.assert_array_equal(other.compute(x, graph).values, layer.compute(x, graph).values)
    assert GraphAttention(fill_value=1).fill_value == 1.0


def test_old_pickle_state_loads():
    layer = layer_for()
    config, options, weights = layer.__getstate__()
    old = {k: v for k, v in options.items() if k not in ("fill_value", "residual", "share_weights")}
    restored = GraphAttention.__new__(GraphAttention)
    restored.__setstate__((config, old, weights))
    assert (restored.fill_value, restored.residual, restored.share_weights) == ("mean", False, False)


def test_share_weights_aliases_lin_r():
    layer = GraphAttention({"num_heads": 2, "head_dim": 3}, in_features=4, variant="gatv2", share_weights=True)
    w = layer.get_weights()
    np.testing.assert_array_equal(w["lin_r.weight"], w["lin_l.weight"])
    new = np.full((6, 4), 0.25, np.float32)
    layer.set_weights({"lin_r.weight": new})
    np.testing.assert_array_equal(layer.get_weights()["lin_l.weight"], new)
    with pytest.raises(InvalidInputError, match="must equal"):
        layer.set_weights({"lin_l.weight": new, "lin_r.weight": new + 1})
    with pytest.raises(InvalidConfigError):
        GraphAttention(variant="gat", share_weights=True)
    with pytest.raises(InvalidConfigError):
        GraphAttention(in_features=(3, 4), variant="gatv2", share_weights=True)


def test_bad_options_refused():
    for kwargs in (
        {"fill_value": "median"},
        {"fill_value": None},
        {"fill_value": True},
        {"in_features": (3,)},
        {"in_features": (3, None)},
    ):
        with pytest.raises(InvalidConfigError):
            GraphAttention(**kwargs)


def test_from_pyg_refuses_what_it_cannot_reproduce():
    class Extra(GATConv):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.gate = torch.nn.Parameter(torch.ones(3))

    with pytest.raises(InvalidConfigError, match="gate"):
        GraphAttention.from_pyg(Extra(4, 3))

    class Plain(GATv2Conv):  # a subclass that changes nothing is taken
        pass

    assert GraphAttention.from_pyg(Plain(4, 3, heads=2)).variant == "gatv2"

    class OwnPropagate(GATConv):  # PyG generates propagate; the override shows in _orig_propagate
        def propagate(self, *args, **kwargs):
            return super().propagate(*args, **kwargs)

    with pytest.raises(InvalidConfigError, match="propagate"):
        GraphAttention.from_pyg(OwnPropagate(4, 3))

    class Overridden(GATConv):
        def message(self, x_j, alpha):
            return super().message(x_j, alpha) * 2

    with pytest.raises(InvalidConfigError, match="message"):
        GraphAttention.from_pyg(Overridden(4, 3))
    with pytest.raises(InvalidConfigError, match="aggr"):
        GraphAttention.from_pyg(GATConv(4, 3, aggr="mean"))
    with pytest.raises(InvalidConfigError, match="fill_value"):
        GraphAttention.from_pyg(GATConv(4, 3, edge_dim=2, fill_value=torch.ones(2)))
    with pytest.raises(InvalidConfigError, match="in_channels"):
        GraphAttention.from_pyg(GATConv(-1, 3))
    hooked = GATConv(4, 3)
    hooked.register_forward_hook(lambda *a: None)
    with pytest.raises(InvalidConfigError, match="hooks"):
        GraphAttention.from_pyg(hooked)
    with pytest.raises(InvalidConfigError):
        GraphAttention.from_pyg(torch.nn.Linear(3, 3))
    # a one-value tensor fill_value and a run lazy module are reproduced
    lazy = GATConv(-1, 3, edge_dim=2, fill_value=torch.tensor(0.5))
    x, ei, ea = torch.randn(6, 4), torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.randn(3, 2)
    lazy(x, ei, ea)
    layer = GraphAttention.from_pyg(lazy.eval())
    assert layer.in_features == 4 and layer.fill_value == 0.5
    with torch.no_grad():
        expected = lazy(x, ei, ea).numpy()
    got = layer.compute(x.numpy(), GraphStructure.from_edge_index(ei.numpy(), 6, ea.numpy())).values
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_set_weights_takes_torch_tensors():
    module = GATConv((4, 3), 2, heads=2, residual=True).eval()
    layer = GraphAttention({"num_heads": 2, "head_dim": 2}, in_features=(4, 3), residual=True)
    layer.set_weights(module.state_dict())  # tensors, some requiring grad
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(layer.get_weights()[k], v.numpy())


# --- NeighborLoader-style mini-batches --------------------------------------------------------


def sample_batch(edge_index, num_nodes, seeds, fanouts, rng):
    """A NeighborLoader mini-batch built as it builds one (NeighborLoader itself needs pyg-lib or
    torch-sparse): nodes relabelled seeds first, then each hop's new nodes; each hop's sampled
    in-edges; the node count after each hop. fanout -1 takes every in-neighbour."""
    src, dst = edge_index
    incoming = [[] for _ in range(num_nodes)]
    for e, t in enumerate(dst.tolist()):
        incoming[t].append(e)
    n_id = list(seeds)
    local = {v: i for i, v in enumerate(n_id)}
    frontier, edges, counts = list(seeds), [], [len(n_id)]
    for fanout in fanouts:
        new_frontier = []
        for v in frontier:
            es = incoming[v]
            if fanout >= 0 and len(es) > fanout:
                es = rng.choice(es, fanout, replace=False).tolist()
            for e in es:
                u = int(src[e])
                if u not in local:
                    local[u] = len(n_id)
                    n_id.append(u)
                    new_frontier.append(u)
                edges.append((local[u], local[v]))
        frontier = new_frontier
        counts.append(len(n_id))
    return np.array(n_id), np.array(edges, dtype=np.int64).reshape(-1, 2), counts


@pytest.mark.parametrize("variant", ["gat", "gatv2"])
def test_neighbor_loader_batch_matches_pyg(backend, variant):
    """A 2-layer model served on a sampled mini-batch, layer by layer as bipartite (x_src, x_dst)
    inputs, equals PyG's modules on the same batch; with every neighbour sampled it equals the
    full-graph output at the seeds."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    n = 200
    edge_index = random_edges(rng, n, n, 1200).numpy()
    x = torch.randn(n, 8)
    conv = GATConv if variant == "gat" else GATv2Conv
    m1, m2 = conv(8, 4, heads=2, residual=True).eval(), conv(8, 3, heads=1, residual=True).eval()
    l1, l2 = GraphAttention.from_pyg(m1), GraphAttention.from_pyg(m2)
    seeds = rng.choice(n, 16, replace=False).tolist()
    for fanouts in ([5, 3], [-1, -1]):
        n_id, edges, counts = sample_batch(edge_index, n, seeds, fanouts, rng)
        xb = x[n_id]
        # layer 1: every sampled node → the nodes of hops 0..1; layer 2: those → the seeds
        keep1 = edges[:, 1] < counts[1]
        ei1 = torch.from_numpy(edges[keep1].T.copy())
        keep2 = edges[:, 1] < counts[0]
        ei2 = torch.from_numpy(edges[keep2].T.copy())
        with torch.no_grad():
            h = m1((xb, xb[: counts[1]]), ei1).relu()
            expected = m2((h, h[: counts[0]]), ei2).numpy()
        g1 = GraphStructure(edges[keep1], (len(n_id), counts[1]))
        g2 = GraphStructure(edges[keep2], (counts[1], counts[0]))
        hb = np.maximum(l1.compute((xb.numpy(), xb[: counts[1]].numpy()), g1, need_weights=False).values, 0)
        got = l2.compute((hb, hb[: counts[0]]), g2, need_weights=False).values
        np.testing.assert_allclose(got, expected, atol=1e-5)
        if fanouts == [-1, -1]:
            with torch.no_grad():
                ei = torch.from_numpy(edge_index)
                full = m2(m1(x, ei).relu(), ei).numpy()
            np.testing.assert_allclose(got, full[seeds], atol=1e-5)


# --- reliability ------------------------------------------------------------------------------

CHANGING_EDGES = r"""
import threading, numpy as np, ruvector as rv
e = np.zeros((2_000_000, 2), np.int64)
e[:, 0] = np.arange(len(e)) % 1000
stop = False
def flip():
    v = 0
    while not stop:
        v ^= 1
        e[:, 1] = v
t = threading.Thread(target=flip); t.start()
built = refused = 0
try:
    for _ in range(12):
        try:
            g = rv.GraphStructure(e, 1000)
            assert g.num_edges == len(e)
            built += 1
        except rv.InvalidInputError as err:
            assert "changed during the call" in str(err), err
            refused += 1
        try:
            rv.GraphAttention({"num_heads": 1, "head_dim": 2}, in_features=1).compute(
                np.ones((1000, 1), np.float32), e, need_weights=False)
        except rv.InvalidInputError as err:
            assert "changed during the call" in str(err), err
finally:
    stop = True
    t.join()
print("built", built, "refused", refused)
"""


def test_edge_array_written_during_the_build_never_corrupts(tmp_path):
    """A thread writing the edge array while GraphStructure reads it (GIL released) gets an error
    or a graph, never an out-of-bounds write; run in a child so that a crash fails the test."""
    import subprocess
    import sys

    script = tmp_path / "race.py"
    script.write_text(CHANGING_EDGES)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "built" in done.stdout


def test_neighbor_loader_example_runs():
    import pathlib
    import re
    import subprocess
    import sys

    example = pathlib.Path(__file__).parents[2] / "examples" / "neighbor_loader.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    diff = float(re.search(r"max \|ruvector - PyG\| = (\S+)", done.stdout).group(1))
    assert diff < 1e-4


def test_compute_batch_takes_targets_and_pairs(backend):
    rng = np.random.default_rng(4)
    layer = layer_for()
    xs = [rng.standard_normal((12, 6)).astype(np.float32) for _ in range(3)]
    graph = GraphStructure(np.asarray(random_edges(rng, 12, 12, 40)).T.copy(), 12)
    per_item = [np.array([1, 3]), np.array([11, 0, 0]), np.array([5])]
    for out, x, ids in zip(layer.compute_batch(xs, graph, targets=per_item), xs, per_item, strict=True):
        np.testing.assert_array_equal(out.values, layer.compute(x, graph).values[ids])
    shared = np.array([2, 7])
    for out, x in zip(layer.compute_batch(xs, graph, targets=shared), xs, strict=True):
        np.testing.assert_array_equal(out.values, layer.compute(x, graph).values[shared])
    bipartite = GraphStructure([(0, 1), (11, 4), (3, 3)], (12, 5))
    pairs = [(x, x[:5]) for x in xs]
    for out, pair in zip(layer.compute_batch(pairs, bipartite), pairs, strict=True):
        np.testing.assert_array_equal(out.values, layer.compute(pair, bipartite).values)

"""Hostile but fair input to every public call (issue 19): random shapes (empty, huge,
negative, ragged), NaN/inf, wrong dtypes, non-arrays, odd configs and weights.

Each call must return or raise a RuVectorError, TypeError or MemoryError: never anything else,
never a crash or a hang. Every target runs its hypothesis loop in a child process, so a
segfault or an abort fails that one test (with the child's output) instead of killing pytest,
and a hang fails on the timeout. RUVECTOR_HOSTILE_EXAMPLES sets the examples per target
(default 300; the ASan step of .ci/slow-checks uses more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

EXAMPLES = int(os.environ.get("RUVECTOR_HOSTILE_EXAMPLES", "300"))

TARGETS = [
    "dot_compute",
    "dot_batch",
    "dot_async",
    "multi_head",
    "graph",
    "graph_structure",
    "temporal",
    "hierarchical",
    "configs",
    "weights",
]


# ---------------------------------------------------------------------------------------------
# The child: hypothesis over one target, printing a JSON summary as its last line.

CHILD = r"""
import asyncio, json, pickle, sys, traceback
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import ruvector as rv

ALLOWED = (rv.RuVectorError, TypeError, MemoryError)
target, examples = sys.argv[1], int(sys.argv[2])
stats = {"cases": 0, "typed": 0, "returned": 0, "untyped": []}


class Odd:
    def __array__(self, dtype=None, copy=None):
        raise ValueError("no array here")


class Items:  # a mapping-like object whose items() misbehaves
    def __init__(self, items):
        self._items = items

    def items(self):
        if isinstance(self._items, BaseException):
            raise self._items
        return self._items


def huge_view(shape):  # no memory behind it: a zero-stride view of one element
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))


DIMS = st.sampled_from([0, 1, 2, 3, 5, 8])
SHAPES = st.lists(DIMS, min_size=0, max_size=4).map(tuple)
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_,
                          np.complex64, object, "U3"])
FILLS = st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, 1e30, -3.0])


@st.composite
def arrays(draw):
    kind = draw(st.sampled_from(["array"] * 6 + ["huge", "zero_width_rows", "ragged", "non_array", "scalar",
                                                 "noncontig", "negative"]))
    if kind == "array":
        shape, dtype, fill = draw(SHAPES), draw(DTYPES), draw(FILLS)
        a = np.random.default_rng(draw(st.integers(0, 9))).standard_normal(shape)
        if draw(st.booleans()):
            a = np.full(shape, fill)
        try:
            return a.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            return a
    if kind == "huge":
        return huge_view(draw(st.sampled_from([(2**40, 4), (4, 2**40), (2**21, 2**21), (3, 2**20, 2**20)])))
    if kind == "zero_width_rows":
        return huge_view((draw(st.sampled_from([2**33, 2**20])), 0))  # weights: 2^40+, refused
    if kind == "ragged":
        return [[1.0, 2.0], [3.0]]
    if kind == "non_array":
        return draw(st.sampled_from([None, "abc", b"x", {"a": 1}, 3 + 4j, Odd(), object(), [], [[]], 7]))
    if kind == "scalar":
        return np.float32(draw(FILLS))
    if kind == "noncontig":
        return np.ones((8, 6), np.float32)[::2, ::3].T
    return -1


INTS = st.one_of(st.sampled_from([-(2**64), -(2**63), -1, 0, 1, 2, 3, 4, 8, 2**31, 2**40, 2**63, 2**64]),
                 st.integers(-3, 16))
ODD = st.sampled_from([None, "8", 2.5, np.nan, True, object(), np.int64(4), [4], {"x": 1}])
FIELD = st.one_of(INTS, ODD)


def check(call):
    stats["cases"] += 1
    try:
        out = call()
        if asyncio.iscoroutine(out):
            out = asyncio.run(asyncio.wait_for(out, 60))
        stats["returned"] += 1
    except ALLOWED:
        stats["typed"] += 1
    except Exception as e:  # anything else is a finding
        stats["untyped"].append(f"{type(e).__name__}: {str(e)[:200]} :: {traceback.format_exc()[-600:]}")


def config(heads, dim):
    try:
        return rv.AttentionConfig(num_heads=heads, head_dim=dim)
    except ALLOWED:
        return rv.AttentionConfig(num_heads=2, head_dim=4)


run = settings(max_examples=examples, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))

if target == "dot_compute":
    @run
    @given(arrays(), arrays(), arrays(), st.one_of(st.none(), arrays()), st.booleans(), st.booleans())
    def t(q, k, v, mask, causal, need_weights):
        check(lambda: rv.DotProductAttention().compute(q, k, v, mask=mask, causal=causal, need_weights=need_weights))
elif target == "dot_batch":
    @run
    @given(st.lists(arrays(), max_size=3), st.lists(arrays(), max_size=3), st.one_of(arrays(), st.lists(arrays())),
           st.one_of(st.none(), st.fixed_dictionaries({"max_batch_size": FIELD, "num_threads": FIELD})))
    def t(qs, ks, vs, batch_config):
        check(lambda: rv.DotProductAttention().compute_batch(qs, ks, vs, batch_config=batch_config))
        check(lambda: rv.DotProductAttention().compute_batch(arrays_stack(qs), arrays_stack(ks), arrays_stack(vs)))

    def arrays_stack(xs):
        if not isinstance(xs, list):
            return xs
        try:
            return np.stack(xs)
        except Exception:
            return xs
elif target == "dot_async":
    @run
    @given(arrays(), arrays(), arrays())
    def t(q, k, v):
        a = rv.DotProductAttention()
        check(lambda: a.compute_async(q, k, v))
        check(lambda: a.compute_batch_async([q], [k], [v]))
elif target == "multi_head":
    @run
    @given(FIELD, FIELD, FIELD, arrays(), arrays(), arrays(), st.one_of(st.none(), arrays()), st.booleans())
    def t(heads, dim, embed, q, k, v, mask, causal):
        def call():
            layer = rv.MultiHeadAttention(config(heads, dim), embed_dim=embed)
            return layer.compute(q, k, v, mask=mask, causal=causal)
        check(call)
        sane, x = rv.MultiHeadAttention(rv.AttentionConfig(num_heads=2, head_dim=4), embed_dim=8), np.ones((3, 8))
        check(lambda: sane.compute(q, x, x))  # one hostile argument at a time
        check(lambda: sane.compute(x, x, x, mask=mask, causal=causal))
elif target == "graph":
    @run
    @given(FIELD, FIELD, FIELD, arrays(), st.one_of(arrays(), st.just(np.array([[0, 1], [1, 0]]))),
           st.sampled_from(["gat", "gatv2", "x", 3]), st.one_of(st.none(), arrays()))
    def t(heads, dim, in_features, x, edges, variant, edge_features):
        def call():
            layer = rv.GraphAttention(config(heads, dim), in_features=in_features, variant=variant)
            return layer.compute(x, edges, edge_features=edge_features)
        check(call)
        sane = rv.GraphAttention(rv.AttentionConfig(num_heads=2, head_dim=4), in_features=3)
        ok_x, ok_edges = np.ones((4, 3), np.float32), np.array([[0, 1], [1, 2], [3, 0]])
        check(lambda: sane.compute(x, ok_edges))  # one hostile argument at a time
        check(lambda: sane.compute(ok_x, edges))
elif target == "graph_structure":
    @run
    @given(st.one_of(arrays(), st.lists(st.tuples(INTS, INTS), max_size=4)), FIELD, st.one_of(st.none(), arrays()))
    def t(edges, n, feats):
        check(lambda: rv.GraphStructure(edges, n, edge_features=feats))
        check(lambda: rv.GraphStructure.from_edge_index(edges, n))
elif target == "temporal":
    @run
    @given(arrays(), st.one_of(st.none(), arrays()), FIELD)
    def t(seq, ts, window):
        check(lambda: rv.TemporalAttention(rv.AttentionConfig(num_heads=1, head_dim=4)).compute(seq, ts))
        check(lambda: rv.TemporalAttention(rv.AttentionConfig(num_heads=1, head_dim=4), window=window))
elif target == "hierarchical":
    @run
    @given(st.lists(arrays(), max_size=3), st.one_of(st.none(), arrays()))
    def t(levels, weights):
        check(lambda: rv.HierarchicalAttention(rv.AttentionConfig(num_heads=1, head_dim=4)).compute(levels, weights))
elif target == "configs":
    @run
    @given(FIELD, FIELD, st.one_of(st.floats(allow_nan=True), ODD), st.one_of(st.booleans(), ODD),
           st.one_of(st.floats(allow_nan=True), ODD), FIELD, FIELD, st.binary(max_size=40))
    def t(heads, dim, dropout, use_bias, scale, seed, n, blob):
        check(lambda: rv.AttentionConfig(num_heads=heads, head_dim=dim, dropout=dropout, use_bias=use_bias,
                                         scale=scale, seed=seed))
        check(lambda: rv.BatchConfig(max_batch_size=n, num_threads=heads))
        check(lambda: rv.set_num_threads(n) if not isinstance(n, int) or n > 64 or n < 1 else None)
        check(lambda: rv.set_simd_backend(dim) if not isinstance(dim, str) else None)
        check(lambda: rv.DotProductAttention({"num_heads": heads, "head_dim": dim}))
        good = pickle.dumps(rv.DotProductAttention())
        cut = len(blob) % len(good)
        corrupt = good[:cut] + blob + good[cut + len(blob):]
        try:  # a corrupt pickle may fail in pickle itself; what ruvector raises must be typed
            pickle.loads(corrupt)
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, AttributeError,
                ImportError, UnicodeDecodeError, OverflowError):
            stats["cases"] += 1
            stats["typed"] += 1
        except Exception:
            check(lambda: pickle.loads(corrupt))
        else:
            stats["cases"] += 1
            stats["returned"] += 1
elif target == "weights":
    cfg = rv.AttentionConfig(num_heads=2, head_dim=4)
    layers = [rv.MultiHeadAttention(cfg, embed_dim=8), rv.GraphAttention(cfg, in_features=5)]
    names = st.sampled_from(["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", "lin.weight",
                             "att_src", "att_dst", "bias", "nope"])
    items = st.one_of(st.lists(st.one_of(st.tuples(names, arrays()), st.tuples(names), st.just(3), st.just("ab"),
                                         st.tuples(names, arrays(), arrays())), max_size=3),
                      st.sampled_from([5, None, RuntimeError("broken"), ValueError("no")]))
    @run
    @given(st.one_of(st.dictionaries(st.one_of(names, INTS), arrays(), max_size=4), ODD, arrays(), items.map(Items)))
    def t(weights):
        for layer in layers:
            check(lambda: layer.set_weights(weights))

t()
print(json.dumps(stats))
"""


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_inputs_give_typed_errors(target, tmp_path):
    script = tmp_path / "hostile_child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        r = subprocess.run(
            [sys.executable, str(script), target, str(EXAMPLES)],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
    except subprocess.TimeoutExpired as e:  # a hang
        pytest.fail(f"{target}: no answer within {e.timeout} s")
    assert r.returncode == 0, f"{target}: the child died ({r.returncode}):\n{r.stderr[-3000:]}"
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["cases"] >= EXAMPLES
    assert stats["untyped"] == [], "\n".join(stats["untyped"][:5])

"""Async and batch calls of every mechanism on the one C++ pool (docs/contract.md §5, issue 7).

Every mechanism: asyncio.gather of compute_async equals compute; stacked and ragged
compute_batch (and compute_batch_async) equal per-item compute; a bad item raises before any
work, naming its index; mismatched batch lengths; pickling, also into spawned processes.
Then the machinery: progress from the calling thread, chunking, the GIL released, the event
loop free, cancellation, BatchConfig.num_threads capping the workers, no oversubscription.
No timed assertions: concurrency is observed through counters and per-thread CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import randn
from reference import dot_product_attention

import ruvector as rv
from ruvector import _async

# ---------------------------------------------------------------------------------------------
# One case per mechanism: how to build a (non-trivial) object, items for compute, and the
# compute_batch columns of those items.


@dataclass
class Case:
    name: str
    make: Callable[[np.random.Generator], Any]
    # item i of a ragged batch: (positional args of compute, sizes vary with i)
    item: Callable[[np.random.Generator, int], tuple[Any, ...]]
    # one stacked batch (B items of equal size): the compute_batch positional args
    stacked: Callable[[np.random.Generator, int], tuple[Any, ...]]
    # the positional args of compute for item i of a stacked batch
    unstack: Callable[[tuple[Any, ...], int], tuple[Any, ...]]


def _dot_make(rng):
    return rv.DotProductAttention({"scale": 0.3})


def _dot_item(rng, i):
    lq, lk, d = 5 + 3 * i, 9 + 5 * i, 16
    return randn(rng, lq, d), randn(rng, lk, d), randn(rng, lk, 8)


def _mha_make(rng):
    mha = rv.MultiHeadAttention({"num_heads": 4, "head_dim": 8, "dropout": 0.0})
    e = 32
    mha.set_weights(
        {
            "in_proj_weight": randn(rng, 3 * e, e) / np.float32(6),
            "in_proj_bias": randn(rng, 3 * e),
            "out_proj.weight": randn(rng, e, e) / np.float32(6),
            "out_proj.bias": randn(rng, e),
        }
    )
    return mha


def _mha_item(rng, i):
    lq, lk = 4 + 3 * i, 7 + 2 * i
    return randn(rng, lq, 32), randn(rng, lk, 32), randn(rng, lk, 32)


def _graph_make(rng):
    gat = rv.GraphAttention({"num_heads": 2, "head_dim": 4, "dropout": 0.0, "seed": 3}, in_features=6)
    gat.set_weights({name: randn(rng, *w.shape) for name, w in gat.get_weights().items()})
    return gat


def _random_edges(rng, n, e):
    return rng.integers(0, n, size=(e, 2)).astype(np.int64)


def _graph_item(rng, i):
    n = 5 + 4 * i
    return randn(rng, n, 6), _random_edges(rng, n, 3 * n)


def _temporal_make(rng):
    return rv.TemporalAttention({"scale": 0.25}, decay_rate=0.2, window=30.0)


def _temporal_item(rng, i):
    t = 6 + 5 * i
    return randn(rng, t, 12), np.sort(rng.uniform(0, 50, t)).astype(np.float64)


def _hier_make(rng):
    return rv.HierarchicalAttention({"scale": 0.4})


def _hier_item(rng, i):
    levels = [randn(rng, 2 + (i + j) % 5, 10) for j in range(1 + i % 3)]
    weights = None if i % 2 else rng.uniform(0.1, 1.0, len(levels))
    return levels, weights


CASES = [
    Case(
        "dot_product",
        _dot_make,
        _dot_item,
        lambda rng, b: (randn(rng, b, 12, 16), randn(rng, b, 20, 16), randn(rng, b, 20, 8)),
        lambda cols, i: (cols[0][i], cols[1][i], cols[2][i]),
    ),
    Case(
        "multi_head",
        _mha_make,
        _mha_item,
        lambda rng, b: (randn(rng, b, 10, 32), randn(rng, b, 14, 32), randn(rng, b, 14, 32)),
        lambda cols, i: (cols[0][i], cols[1][i], cols[2][i]),
    ),
    Case(
        "graph",
        _graph_make,
        _graph_item,
        # one graph for every item, stacked node features [B, N, F]
        lambda rng, b: (randn(rng, b, 9, 6), rv.GraphStructure(_random_edges(rng, 9, 20), 9)),
        lambda cols, i: (cols[0][i], cols[1]),
    ),
    Case(
        "temporal",
        _temporal_make,
        _temporal_item,
        lambda rng, b: (randn(rng, b, 15, 12), np.sort(rng.uniform(0, 40, (b, 15)), axis=1)),
        lambda cols, i: (cols[0][i], cols[1][i]),
    ),
    Case(
        "hierarchical",
        _hier_make,
        _hier_item,
        lambda rng, b: (randn(rng, b, 3, 7, 10), rng.uniform(0.1, 1.0, (b, 3))),  # [B, L, N, D]
        lambda cols, i: (cols[0][i], cols[1][i]),
    ),
]
CASE_IDS = [c.name for c in CASES]


def columns_of(items: list[tuple[Any, ...]]) -> list[Any]:
    """compute_batch positional args from per-item compute args (a column of Nones: None)."""
    cols = [list(col) for col in zip(*items, strict=True)]
    return [None if all(x is None for x in col) else col for col in cols]


def assert_same(a, b):
    """Two AttentionOutputs with the same numbers (the same code ran on the same data)."""
    np.testing.assert_array_equal(a.values, b.values)
    if b.weights is None:
        assert a.weights is None
    else:
        np.testing.assert_array_equal(a.weights, b.weights)
    assert a.metadata.keys() == b.metadata.keys()
    assert a.metadata["attention_type"] == b.metadata["attention_type"]


@pytest.fixture
def run_jobs_spy(monkeypatch):
    """Records (form, number of jobs, max_workers) of every chunk handed to the pool."""
    chunks: list[tuple[str, int, int]] = []
    native = rv._native

    class Native:
        def __getattr__(self, name):
            return getattr(native, name)

        @staticmethod
        def _run_jobs(jobs, max_workers=0):
            chunks.append(("sync", len(jobs), max_workers))
            return native._run_jobs(jobs, max_workers)

        @staticmethod
        def _submit_jobs(jobs, max_workers, callback):
            chunks.append(("async", len(jobs), max_workers))
            return native._submit_jobs(jobs, max_workers, callback)

    if hasattr(native, "_CompletionChannel"):

        class Channel(native._CompletionChannel):
            def submit(self, jobs, max_workers, future):
                chunks.append(("async", len(jobs), max_workers))
                return super().submit(jobs, max_workers, future)

        Native._CompletionChannel = Channel

    monkeypatch.setattr(_async, "_native", Native())
    return chunks


@pytest.fixture(params=["channel", "callback"])
def completion_path(request, monkeypatch):
    """Both ways a finished async call reaches its event loop: the loop's completion channel
    (POSIX selector loops), or a pool worker taking the GIL to call call_soon_threadsafe
    (loops that cannot watch a socket, e.g. Windows' proactor loop)."""
    if request.param == "callback":
        monkeypatch.setattr(_async, "_channel_of", lambda loop: None)
    elif not hasattr(rv._native, "_CompletionChannel"):
        pytest.skip("no completion channel on this platform")
    return request.param


# ---------------------------------------------------------------------------------------------
# Every mechanism


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gather_of_async_calls_equals_sync(backend, rng, case, completion_path):
    obj = case.make(rng)
    items = [case.item(rng, i) for i in range(12)]
    expected = [obj.compute(*args) for args in items]

    async def main():
        return await asyncio.gather(*(obj.compute_async(*args) for args in items))

    for got, want in zip(asyncio.run(main()), expected, strict=True):
        assert_same(got, want)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_ragged_batch_equals_per_item_compute(backend, rng, case):
    obj = case.make(rng)
    items = [case.item(rng, i) for i in range(7)]
    expected = [obj.compute(*args) for args in items]
    cols = columns_of(items)
    outs = obj.compute_batch(*cols)
    assert len(outs) == len(items)
    for got, want in zip(outs, expected, strict=True):
        assert_same(got, want)
    outs = asyncio.run(obj.compute_batch_async(*cols, batch_config=rv.BatchConfig(max_batch_size=3)))
    for got, want in zip(outs, expected, strict=True):
        assert_same(got, want)
    # tuples work as well as lists; need_weights is passed through to every item
    outs = obj.compute_batch(*(None if c is None else tuple(c) for c in cols), need_weights=False)
    for got, args in zip(outs, items, strict=True):
        assert got.weights is None
        np.testing.assert_array_equal(got.values, obj.compute(*args, need_weights=False).values)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_stacked_batch_equals_per_item_compute(backend, rng, case):
    obj = case.make(rng)
    cols = case.stacked(rng, 6)
    outs = obj.compute_batch(*cols)
    async_outs = asyncio.run(obj.compute_batch_async(*cols))
    assert len(outs) == len(async_outs) == 6
    for i in range(6):
        want = obj.compute(*case.unstack(cols, i))
        assert_same(outs[i], want)
        assert_same(async_outs[i], want)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_item_raises_before_any_work_naming_it(rng, case, run_jobs_spy):
    obj = case.make(rng)
    items = [case.item(rng, i) for i in range(6)]
    items[4] = ("not an array", *items[4][1:])
    calls = []
    with pytest.raises(rv.InvalidInputError, match="item 4"):
        obj.compute_batch(*columns_of(items), progress=lambda d, t: calls.append(d))
    with pytest.raises(rv.InvalidInputError, match="item 4"):
        asyncio.run(obj.compute_batch_async(*columns_of(items), progress=lambda d, t: calls.append(d)))
    assert calls == []
    assert run_jobs_spy == []  # nothing reached the pool
    # the same object still works afterwards
    assert_same(obj.compute_batch(*columns_of(items[:2]))[1], obj.compute(*items[1]))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mismatched_batch_lengths_raise_invalid_input(rng, case, run_jobs_spy):
    obj = case.make(rng)
    cols = columns_of([case.item(rng, i) for i in range(4)])
    cols = [c if c is not None else [None] * 4 for c in cols]
    cols[1] = cols[1][:3]
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        obj.compute_batch(*cols)
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        asyncio.run(obj.compute_batch_async(*cols))
    assert run_jobs_spy == []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_pickle_round_trip(rng, case):
    obj = case.make(rng)
    obj.compute(*case.item(rng, 1))  # lazily initialised state (if any) exists now
    clone = pickle.loads(pickle.dumps(obj))
    assert type(clone) is type(obj)
    assert clone.config == obj.config
    if hasattr(obj, "get_weights"):
        w, cw = obj.get_weights(), clone.get_weights()
        assert w.keys() == cw.keys()
        for name in w:
            np.testing.assert_array_equal(cw[name], w[name])
    items = [case.item(rng, i) for i in range(3)]
    for args in items:
        assert_same(clone.compute(*args), obj.compute(*args))
    cols = columns_of(items)
    for got, want in zip(clone.compute_batch(*cols), obj.compute_batch(*cols), strict=True):
        assert_same(got, want)
    got = asyncio.run(clone.compute_async(*items[2]))
    assert_same(got, obj.compute(*items[2]))


def _values_in_child(obj: Any, args: tuple[Any, ...]) -> tuple[str, np.ndarray, int]:
    """Runs in a spawned process: the pickled object computes there."""
    import ruvector

    batch = obj.compute_batch(*[[a] if a is not None else None for a in args])
    np.testing.assert_array_equal(batch[0].values, obj.compute(*args).values)
    return type(obj).__name__, obj.compute(*args).values, ruvector.get_num_threads()


def test_spawned_process_pool_uses_pickled_objects(rng):
    jobs = []
    for case in CASES:
        obj = case.make(rng)
        args = case.item(rng, 2)
        jobs.append((obj, args))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_values_in_child, jobs)
    for (obj, args), (name, values, threads) in zip(jobs, results, strict=True):
        assert name == type(obj).__name__
        assert threads >= 1
        np.testing.assert_array_equal(values, obj.compute(*args).values)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_errors_surface_as_spec_types_when_awaited(rng, case, completion_path):
    obj = case.make(rng)
    good = case.item(rng, 1)

    async def main():
        coro = obj.compute_async(None, *good[1:])  # creating the awaitable does not raise
        with pytest.raises(rv.InvalidInputError):
            await coro
        with pytest.raises(rv.InvalidInputError, match="item 0"):
            await obj.compute_batch_async(*columns_of([(None, *good[1:]), good]))
        # the loop and the object are fine afterwards
        return await obj.compute_async(*good)

    assert_same(asyncio.run(main()), obj.compute(*good))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_object_is_shared_safely_between_threads(rng, case):
    obj = case.make(rng)
    items = [case.item(rng, i) for i in range(8)]
    expected = [obj.compute(*args) for args in items]

    def work(i):
        if i % 3 == 0:
            return obj.compute_batch(*columns_of(items))[i % len(items)]
        if i % 3 == 1:
            return asyncio.run(obj.compute_async(*items[i % len(items)]))
        return obj.compute(*items[i % len(items)])

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, range(24)))
    for i, got in enumerate(results):
        assert_same(got, expected[i % len(items)])


# ---------------------------------------------------------------------------------------------
# DotProductAttention: per-item keyword arrays, references, zero copy


def test_batch_matches_numpy_reference_with_per_item_masks(backend, rng):
    attn = rv.DotProductAttention()
    qs = [randn(rng, 4 + i, 8) for i in range(5)]
    ks = [randn(rng, 6 + 2 * i, 8) for i in range(5)]
    vs = [randn(rng, 6 + 2 * i, 3) for i in range(5)]
    masks = [rng.random((4 + i, 6 + 2 * i)) > 0.3 for i in range(5)]
    masks[2] = None
    outs = attn.compute_batch(qs, ks, vs, mask=masks, causal=True)
    for q, k, v, m, out in zip(qs, ks, vs, masks, outs, strict=True):
        ref_v, ref_w = dot_product_attention(q, k, v, mask=m, causal=True)
        np.testing.assert_allclose(out.values, ref_v, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(out.weights, ref_w, rtol=2e-5, atol=2e-5)
    # a stacked [B, Lq, Lk] mask is per item, a 2-D one is shared
    q3, k3, v3 = randn(rng, 4, 5, 8), randn(rng, 4, 7, 8), randn(rng, 4, 7, 8)
    m3 = rng.random((4, 5, 7)) > 0.5
    for i, out in enumerate(attn.compute_batch(q3, k3, v3, mask=m3)):
        np.testing.assert_allclose(out.values, dot_product_attention(q3[i], k3[i], v3[i], mask=m3[i])[0], 2e-5, 2e-5)
    for i, out in enumerate(attn.compute_batch(q3, k3, v3, mask=m3[1])):
        np.testing.assert_allclose(out.values, dot_product_attention(q3[i], k3[i], v3[i], mask=m3[1])[0], 2e-5, 2e-5)
    with pytest.raises(rv.InvalidInputError, match="mask has 3 entries for 4 items"):
        attn.compute_batch(q3, k3, v3, mask=list(m3[:3]))
    # per item also when every entry is None (no mask anywhere), or given as nested lists
    for i, out in enumerate(attn.compute_batch(q3, k3, v3, mask=[None] * 4)):
        np.testing.assert_allclose(out.values, dot_product_attention(q3[i], k3[i], v3[i])[0], 2e-5, 2e-5)
    with pytest.raises(rv.InvalidInputError, match="mask has 2 entries for 4 items"):
        attn.compute_batch(q3, k3, v3, mask=[None, None])
    nested = [m.tolist() for m in m3]
    for i, out in enumerate(attn.compute_batch(list(q3), list(k3), list(v3), mask=nested)):
        np.testing.assert_allclose(out.values, dot_product_attention(q3[i], k3[i], v3[i], mask=m3[i])[0], 2e-5, 2e-5)


def spy_on(method):
    """A DotProductAttention whose `method` records its positional arguments in `.seen`."""
    seen = []

    def recorded(self, *args, **kwargs):
        seen.append(args)
        return getattr(rv.DotProductAttention, method)(self, *args, **kwargs)

    spy = type("Spy", (rv.DotProductAttention,), {method: recorded})()
    return spy, seen


def test_stacked_float32_batch_is_read_without_copies(rng):
    q, k, v = randn(rng, 5, 6, 8), randn(rng, 5, 9, 8), randn(rng, 5, 9, 4)
    # Stacked float32 arrays reach the native side as they are (it views each item's slice).
    stacked, seen = spy_on("_prepare_stacked")
    outs = stacked.compute_batch(q, k, v, need_weights=True)
    assert len(seen) == 1 and all(a is b for a, b in zip(seen[0], (q, k, v), strict=True))
    for i in range(5):
        ref_values, ref_weights = dot_product_attention(q[i], k[i], v[i])
        np.testing.assert_allclose(outs[i].values, ref_values, 2e-5, 2e-5)
        np.testing.assert_allclose(outs[i].weights, ref_weights, 2e-5, 2e-5)
    # Sequences of arrays go item by item, each item a view of the caller's array.
    per_item, seen = spy_on("_prepare")
    outs = per_item.compute_batch(list(q), list(k), list(v))
    assert len(seen) == 5
    for i, (qi, ki, vi) in enumerate(seen):
        assert qi.base is q and ki.base is k and vi.base is v  # views, not copies
        assert np.shares_memory(qi, q[i])
        np.testing.assert_allclose(outs[i].values, dot_product_attention(q[i], k[i], v[i])[0], 2e-5, 2e-5)


def test_stacked_batch_fast_path_matches_item_by_item(rng):
    attn, stacked_calls = spy_on("_prepare_stacked")
    q, k, v = randn(rng, 4, 7, 8), randn(rng, 4, 11, 8), randn(rng, 4, 11, 3)
    mask = rng.random((7, 11)) > 0.3
    mask[2] = False  # a row with nothing to attend to
    for kwargs in ({}, {"mask": mask}, {"causal": True, "need_weights": False}, {"mask": mask.astype(np.float32)}):
        stacked = attn.compute_batch(q, k, v, **kwargs)
        one_by_one = [attn.compute(q[i], k[i], v[i], **kwargs) for i in range(4)]
        for a, b in zip(stacked, one_by_one, strict=True):
            np.testing.assert_array_equal(a.values, b.values)
            if b.weights is None:
                assert a.weights is None
            else:
                np.testing.assert_array_equal(a.weights, b.weights)
    # float64 stacks are converted once; the results match float32 input
    outs = attn.compute_batch(q.astype(np.float64), k, v)
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out.values, attn.compute(q[i], k[i], v[i]).values, 1e-6, 1e-6)
    assert len(stacked_calls) == 5  # every call above took the stacked path
    # an empty stack is [] whatever else was given, as item by item
    assert attn.compute_batch(q[:0], k[:0], v[:0], mask=np.ones((7, 11), np.int32)) == []
    assert len(stacked_calls) == 5


def test_stacked_batch_errors_name_item_0(rng):
    attn = rv.DotProductAttention()
    q, k, v = randn(rng, 3, 5, 8), randn(rng, 3, 6, 7), randn(rng, 3, 6, 4)
    with pytest.raises(rv.DimensionMismatchError, match="item 0: key has 7 columns, query has 8"):
        attn.compute_batch(q, k, v)
    with pytest.raises(rv.InvalidInputError, match="item 0: mask"):
        attn.compute_batch(q, randn(rng, 3, 6, 8), v, mask=np.ones((5, 5), bool))
    with pytest.raises(rv.InvalidInputError, match="different lengths"):
        attn.compute_batch(q, randn(rng, 2, 6, 8), randn(rng, 2, 6, 4))


def test_other_inputs_are_converted(rng):
    attn = rv.DotProductAttention()
    q, k, v = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 6, 5)), rng.standard_normal((3, 6, 2))
    outs = attn.compute_batch(q, k.tolist(), [np.asfortranarray(x) for x in v])
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out.values, dot_product_attention(q[i], k[i], v[i])[0], 2e-5, 2e-5)


def test_empty_batch_gives_empty_list(rng, run_jobs_spy):
    attn = rv.DotProductAttention()
    calls = []
    assert attn.compute_batch([], [], [], progress=lambda d, t: calls.append(d)) == []
    assert asyncio.run(attn.compute_batch_async(np.zeros((0, 3, 4), np.float32), [], [])) == []
    assert calls == [] and run_jobs_spy == []


@pytest.mark.parametrize(
    "bad",
    ["abc", 3, None, {"a": 1}, np.float32(1.0), np.ones(4, np.float32), iter([np.ones((2, 2))])],
)
def test_bad_batch_containers(bad):
    attn = rv.DotProductAttention()
    ok = [np.ones((2, 2), np.float32)]
    with pytest.raises(rv.InvalidInputError):
        attn.compute_batch(bad, ok, ok)


# ---------------------------------------------------------------------------------------------
# Progress and chunking


def test_progress_is_called_from_the_calling_thread_per_chunk(rng, run_jobs_spy):
    attn = rv.DotProductAttention()
    q, k, v = randn(rng, 10, 6, 8), randn(rng, 10, 9, 8), randn(rng, 10, 9, 8)
    calls = []

    def progress(done, total):
        calls.append((done, total, threading.get_ident()))

    outs = attn.compute_batch(q, k, v, batch_config=rv.BatchConfig(max_batch_size=3), progress=progress)
    assert [c[:2] for c in calls] == [(3, 10), (6, 10), (9, 10), (10, 10)]
    assert {c[2] for c in calls} == {threading.get_ident()}
    assert run_jobs_spy == [("sync", 3, 0), ("sync", 3, 0), ("sync", 3, 0), ("sync", 1, 0)]
    for i, out in enumerate(outs):
        assert_same(out, attn.compute(q[i], k[i], v[i]))

    # the async form calls it on the event loop's thread: the caller's
    calls.clear()
    run_jobs_spy.clear()

    async def main():
        return await attn.compute_batch_async(q, k, v, batch_config={"max_batch_size": 4}, progress=progress)

    outs = asyncio.run(main())
    assert [c[:2] for c in calls] == [(4, 10), (8, 10), (10, 10)]
    assert {c[2] for c in calls} == {threading.get_ident()}
    assert run_jobs_spy == [("async", 4, 0), ("async", 4, 0), ("async", 2, 0)]
    for i, out in enumerate(outs):
        assert_same(out, attn.compute(q[i], k[i], v[i]))


@pytest.mark.parametrize("size", [1, 2, 7, 10, 1000])
def test_chunk_sizes(rng, run_jobs_spy, size):
    attn = rv.DotProductAttention()
    items = [_dot_item(rng, i % 3) for i in range(10)]
    calls = []
    outs = attn.compute_batch(
        *columns_of(items),
        batch_config={"max_batch_size": size, "num_threads": 2},
        progress=lambda d, t: calls.append(d),
    )
    chunks = math.ceil(10 / size)
    assert len(run_jobs_spy) == chunks
    assert all(n <= size for _, n, _ in run_jobs_spy)
    assert all(w == 2 for _, _, w in run_jobs_spy)
    assert len(calls) >= chunks and calls == sorted(calls) and calls[-1] == 10
    for got, args in zip(outs, items, strict=True):
        assert_same(got, attn.compute(*args))


def test_progress_errors_propagate(rng):
    attn = rv.DotProductAttention()
    q = randn(rng, 4, 3, 4)

    def progress(done, total):
        raise KeyError("stop")

    with pytest.raises(KeyError):
        attn.compute_batch(q, q, q, progress=progress)
    with pytest.raises(rv.InvalidInputError, match="progress must be a callable"):
        attn.compute_batch(q, q, q, progress=5)


def test_enable_progress_without_callable_writes_a_line_without_tqdm(rng, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    attn = rv.DotProductAttention()
    q = randn(rng, 5, 3, 4)
    attn.compute_batch(q, q, q, batch_config=rv.BatchConfig(max_batch_size=2, enable_progress=True))
    err = capsys.readouterr().err
    assert "ruvector batch: 2/5" in err and "ruvector batch: 5/5" in err
    attn.compute_batch(q, q, q)  # off by default
    assert capsys.readouterr().err == ""


def test_enable_progress_shows_a_tqdm_bar(rng, capsys):
    pytest.importorskip("tqdm")
    attn = rv.DotProductAttention()
    q = randn(rng, 5, 3, 4)
    asyncio.run(attn.compute_batch_async(q, q, q, batch_config={"enable_progress": True, "max_batch_size": 2}))
    err = capsys.readouterr().err
    assert "5/5" in err and "ruvector batch" in err


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"max_batch_size": 0}, rv.InvalidConfigError),
        ({"max_batch_size": 2.5}, rv.InvalidConfigError),
        ({"num_threads": 0}, rv.InvalidConfigError),
        ({"num_threads": True}, rv.InvalidConfigError),
        ({"max_batch": 3}, rv.InvalidConfigError),
        ("fast", rv.InvalidInputError),
        (7, rv.InvalidInputError),
    ],
)
def test_bad_batch_config(rng, config, error):
    q = randn(rng, 2, 3, 4)
    with pytest.raises(error):
        rv.DotProductAttention().compute_batch(q, q, q, batch_config=config)


# ---------------------------------------------------------------------------------------------
# The event loop stays free, the GIL is released


def _long_inputs(rng, length=1500, d=64):
    return randn(rng, length, d), randn(rng, length, d), randn(rng, length, d)


def test_ticker_keeps_ticking_during_a_long_compute(rng, completion_path):
    attn = rv.DotProductAttention()
    q, k, v = _long_inputs(rng)

    async def main():
        task = asyncio.ensure_future(attn.compute_async(q, k, v))
        ticks = 0
        while not task.done():  # only runs while the compute is in flight
            ticks += 1
            await asyncio.sleep(0)
        return ticks, await task

    ticks, out = asyncio.run(main())
    assert ticks > 0
    assert_same(out, attn.compute(q, k, v))


class _Counter(threading.Thread):
    """A pure-Python thread that counts while it holds the GIL and yields it after each step.
    With the switch interval made huge, it can count only while the main thread has given the
    GIL away (a blocking call, or native code that released it)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self.stop = False
        self.running = threading.Event()

    def run(self) -> None:
        self.running.set()
        while not self.stop:
            self.count += 1
            time.sleep(0)


@pytest.mark.parametrize("call", ["compute", "compute_batch"])
def test_pure_python_thread_progresses_during_compute(rng, call):
    attn = rv.DotProductAttention()
    q, k, v = _long_inputs(rng, 600)
    counter = _Counter()
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)  # no forced GIL hand-over: only a released GIL lets it run
    try:
        counter.start()
        counter.running.wait()
        before = counter.count
        for _ in range(100):  # on a loaded machine the thread may need a few chances to run
            if call == "compute":
                attn.compute(q, k, v)
            else:
                attn.compute_batch([q, q, q], [k, k, k], [v, v, v])
            if counter.count > before:
                break
        during = counter.count - before
    finally:
        counter.stop = True
        sys.setswitchinterval(old)
        counter.join()
    assert during > 0


# ---------------------------------------------------------------------------------------------
# Cancellation


def test_cancelling_an_awaiting_task_is_safe(rng, completion_path):
    attn = rv.DotProductAttention()
    q, k, v = _long_inputs(rng, 1000)
    small = _dot_item(rng, 2)

    async def main():
        task = asyncio.ensure_future(attn.compute_async(q.copy(), k.copy(), v.copy()))
        await asyncio.sleep(0)  # submitted to the pool
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.collect()  # the inputs' last Python references are the running job's
        try:  # a timeout cancels the call, unless its result arrived in the same loop pass
            late = await asyncio.wait_for(attn.compute_async(q, k, v), timeout=1e-6)
            assert_same(late, attn.compute(q, k, v))
        except asyncio.TimeoutError:
            pass
        # many calls cancelled at once: the queued ones are dropped
        tasks = [asyncio.ensure_future(attn.compute_async(q, k, v)) for _ in range(20)]
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return await attn.compute_async(*small)

    assert_same(asyncio.run(main()), attn.compute(*small))
    assert_same(attn.compute(q, k, v), rv.DotProductAttention().compute(q, k, v))


def test_cancelling_a_batch_stops_at_a_chunk(rng, run_jobs_spy, completion_path):
    attn = rv.DotProductAttention()
    q, k, v = _long_inputs(rng, 600)
    calls = []

    async def main():
        task = asyncio.ensure_future(
            attn.compute_batch_async(
                [q] * 40, [k] * 40, [v] * 40, batch_config={"max_batch_size": 1}, progress=lambda d, t: calls.append(d)
            )
        )
        while not calls:  # first chunk done
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(calls)

    done_at_cancel = asyncio.run(main())
    assert calls[-1] == done_at_cancel < 40  # no progress after the cancellation
    assert len(run_jobs_spy) <= done_at_cancel + 1  # no chunk submitted after it


def _run_script(code: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run(
        [sys.executable, "-c", prelude + "\n" + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


CALLBACK_PATH = "import ruvector._async as A; A._channel_of = lambda loop: None"


@pytest.mark.parametrize("path", ["channel", "callback"])
def test_loop_closed_or_interpreter_exiting_with_work_in_flight(path):
    r = _run_script(
        """
        import asyncio, time
        import numpy as np, ruvector as rv
        a = rv.DotProductAttention()
        x = np.random.default_rng(0).standard_normal((1500, 64)).astype(np.float32)

        async def main():
            t = asyncio.ensure_future(a.compute_async(x, x, x))
            await asyncio.sleep(0)
            t.cancel()
            # not awaited: asyncio.run closes the loop while the pool still computes

        asyncio.run(main())
        time.sleep(0.3)  # the pool finishes the cancelled call after the loop has closed

        async def leave():  # then exit with calls still running
            for _ in range(4):
                asyncio.ensure_future(a.compute_async(x, x, x))
            await asyncio.sleep(0)
        asyncio.run(leave())
        print("done")
        """,
        CALLBACK_PATH if path == "callback" else "",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
    assert r.stderr == ""


@pytest.mark.parametrize("path", ["channel", "callback"])
def test_resizing_the_pool_with_async_calls_pending_does_not_hang(path):
    r = _run_script(
        """
        import asyncio
        import numpy as np, ruvector as rv
        a = rv.DotProductAttention()
        x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
        want = a.compute(x, x, x).values

        async def main():
            for it in range(40):
                tasks = [asyncio.ensure_future(a.compute_async(x, x, x)) for _ in range(30)]
                await asyncio.sleep(0)
                rv.set_num_threads(1 + it % 2)
                for out in await asyncio.gather(*tasks):
                    assert (out.values == want).all()

        asyncio.run(main())
        print("done")
        """,
        CALLBACK_PATH if path == "callback" else "",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_running_the_inherited_loop_leaves_the_parents_calls_alone():
    # Issue 19 item 3: the child kept running the inherited loop and drained the shared
    # completion socket, so the parent's compute_async calls never resolved again.
    r = _run_script(
        """
        import asyncio, os, sys, time, warnings
        import numpy as np, ruvector as rv
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        a = rv.DotProductAttention()
        x = np.random.default_rng(0).standard_normal((48, 16)).astype(np.float32)
        want = a.compute(x, x, x).values

        async def calls(seconds):
            end, n = time.monotonic() + seconds, 0
            while time.monotonic() < end:
                outs = await asyncio.wait_for(
                    asyncio.gather(*(a.compute_async(x, x, x) for _ in range(8))), 10)
                assert all((o.values == want).all() for o in outs)
                n += 1
            return n

        async def main():
            await calls(0.05)  # the loop has its channel before the fork
            loop = asyncio.get_running_loop()
            pid = os.fork()
            if pid == 0:  # the child keeps running the inherited loop, making calls
                try:
                    # asyncio forgets the running loop in a child; this one takes it back
                    asyncio.events._set_running_loop(loop)
                    await calls(1.0)
                    os._exit(0)
                except BaseException:
                    os._exit(3)
            n = await calls(1.5)
            _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
            return n, os.waitstatus_to_exitcode(status)

        n, child = asyncio.run(main())
        print("done", n > 0, child)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["done", "True", "0"]


def _fds_and_rss() -> tuple[int, float]:
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return len(os.listdir("/proc/self/fd")), rss_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("path", ["channel", "callback"])
def test_loops_closed_with_calls_in_flight_release_them(path, monkeypatch):
    # Issue 19 item 4: each closed loop kept its call (future, loop, buffers) and its
    # channel's sockets: 100 runs took 6 -> 184 file descriptors and +184 MB.
    if path == "callback":
        monkeypatch.setattr(_async, "_channel_of", lambda loop: None)
    a = rv.DotProductAttention()
    x = np.random.default_rng(0).standard_normal((1024, 256)).astype(np.float32)

    def runs(n):
        for _ in range(n):
            xs = x.copy()  # a fresh buffer per call: a leaked call keeps 1 MB alive
            with contextlib.suppress(asyncio.TimeoutError):
                asyncio.run(asyncio.wait_for(a.compute_async(xs, xs, xs), 0.0005))
        time.sleep(0.3)  # the pool finishes the abandoned calls
        gc.collect()

    fds0, _ = _fds_and_rss()

    def settled() -> tuple[int, float]:  # the abandoned calls may still run on a slow machine
        deadline = time.monotonic() + 60
        fds, rss = _fds_and_rss()
        while fds - fds0 > 4 and time.monotonic() < deadline:
            time.sleep(0.2)
            gc.collect()
            fds, rss = _fds_and_rss()
        return fds, rss

    runs(100)  # warm-up: fills the output cache (64 MB of recycled outputs) and the pool
    _, rss0 = settled()
    runs(150)
    fds1, rss1 = settled()
    assert fds1 - fds0 <= 4, (fds0, fds1)
    runs(150)
    fds2, rss2 = settled()
    assert fds2 - fds0 <= 4, (fds0, fds2)
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan's quarantine keeps freed memory
        # A leak of the inputs alone is 150 MB in each round of 150 runs. The allocator's
        # arenas may still grow once after the warm-up (+44 MB seen in one round of a full
        # suite run), never twice: the smaller of the two rounds must stay small.
        assert min(rss1 - rss0, rss2 - rss1) < 40, (rss0, rss1, rss2)


# ---------------------------------------------------------------------------------------------
# One pool: the thread cap and no oversubscription, seen through per-thread CPU time


def _thread_cpu_ms() -> dict[int, float]:
    """CPU time (ms) of every thread of this process: from schedstat (ns) where the kernel
    keeps it, else from utime + stime (clock ticks)."""
    cpu = {}
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    cpu[int(tid)] = int(f.read().split()[0]) / 1e6
                continue
            except (FileNotFoundError, IndexError, ValueError):
                pass
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[int(tid)] = (int(fields[11]) + int(fields[12])) * tick_ms
        except FileNotFoundError:  # the thread ended
            continue
    return cpu


def _cpu_per_thread(fn: Callable[[], object], min_ms: float = 200.0, max_runs: int = 100) -> dict[int, float]:
    """CPU time (ms) each thread spent while fn ran, repeating fn until the process has spent
    ``min_ms`` so that the split is measurable."""
    before = _thread_cpu_ms()
    for _ in range(max_runs):
        fn()
        after = _thread_cpu_ms()
        delta = {t: after[t] - before.get(t, 0.0) for t in after}
        if sum(delta.values()) >= min_ms:
            break
    return delta


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


@pytest.fixture
def two_threads():
    previous = rv.get_num_threads()
    rv.set_num_threads(2)
    yield
    rv.set_num_threads(previous)


def _cpu_of_one_run(make_run: Callable[[int], Callable[[], object]]) -> dict[int, float]:
    """Per-thread CPU time (ms) of one run of ``make_run(b)()``, growing the workload size b
    until the run spends enough CPU to show where it ran."""
    b = 16
    for _ in range(12):
        cpu = _cpu_per_thread(make_run(b), max_runs=1)
        if sum(cpu.values()) >= 150:
            return cpu
        b *= 2
    return cpu


@needs_proc
@pytest.mark.parametrize("form", ["sync", "async"])
def test_num_threads_caps_the_workers_of_a_batch(rng, two_threads, form):
    attn = rv.DotProductAttention()
    # items big enough that each one would also split over the pool on its own
    q, k, v = randn(rng, 700, 64), randn(rng, 700, 64), randn(rng, 700, 64)
    cfg = rv.BatchConfig(num_threads=1)

    def make_run(b):
        if form == "sync":
            return lambda: attn.compute_batch([q] * b, [k] * b, [v] * b, batch_config=cfg, need_weights=False)
        return lambda: asyncio.run(
            attn.compute_batch_async([q] * b, [k] * b, [v] * b, batch_config=cfg, need_weights=False)
        )

    cpu = _cpu_of_one_run(make_run)
    # async: the event loop's thread only runs Python (asyncio, preparing, converting); judge
    # the computing threads alone, the loop's share varies with the machine
    loop_thread = cpu.pop(threading.get_native_id(), 0.0) if form == "async" else 0.0
    total = sum(cpu.values())
    assert total >= 100  # ms: enough work to see where it ran
    assert max(cpu.values()) >= 0.9 * total, (cpu, loop_thread)  # one thread did (nearly) all of it


@needs_proc
@pytest.mark.parametrize("form", ["sync", "async"])
def test_nested_parallelism_never_uses_more_threads_than_the_pool(rng, two_threads, form):
    attn = rv.DotProductAttention()
    # a batch over the pool whose items would each split over the pool too
    q, k, v = randn(rng, 700, 64), randn(rng, 700, 64), randn(rng, 700, 64)

    def make_run(b):
        if form == "sync":
            return lambda: attn.compute_batch([q] * b, [k] * b, [v] * b, need_weights=False)
        return lambda: asyncio.run(attn.compute_batch_async([q] * b, [k] * b, [v] * b, need_weights=False))

    cpu = _cpu_of_one_run(make_run)
    # async: the event loop's thread only runs Python (asyncio, preparing items, converting
    # outputs); its share varies with the machine, so the computing threads are judged alone
    loop_thread = cpu.pop(threading.get_native_id(), 0.0) if form == "async" else 0.0
    workers = sorted(cpu.values(), reverse=True)
    total = sum(workers)
    assert total >= 100
    assert workers[0] + workers[1] >= 0.95 * total, (workers, loop_thread)  # two threads (the pool's size)
    assert loop_thread <= 0.35 * (total + loop_thread), (workers, loop_thread)


@needs_proc
def test_async_batches_and_concurrent_calls_never_use_more_threads_than_the_pool(rng):
    previous = rv.get_num_threads()
    rv.set_num_threads(1)
    try:
        attn = rv.DotProductAttention()
        q, k, v = randn(rng, 700, 64), randn(rng, 700, 64), randn(rng, 700, 64)
        expected = attn.compute(q, k, v, need_weights=False)
        results = []

        async def main(b):
            return await asyncio.gather(
                # items that would split inside, too
                attn.compute_batch_async([q] * b, [k] * b, [v] * b, need_weights=False),
                *(attn.compute_async(q, k, v, need_weights=False) for i in range(b)),
            )

        cpu = _cpu_of_one_run(lambda b: lambda: results.append(asyncio.run(main(b))))
        total = sum(cpu.values())
        assert total >= 150
        # the pool's one worker did (nearly) all of it, not the event loop's thread
        assert max(cpu.values()) >= 0.7 * total, cpu
        assert cpu[threading.get_native_id()] <= 0.3 * total, cpu
        batch, *singles = results[-1]
        for out in [*batch, *singles]:
            assert_same(out, expected)
    finally:
        rv.set_num_threads(previous)


@needs_proc
def test_concurrent_small_calls_run_on_the_pool_in_parallel(rng, two_threads):
    attn = rv.DotProductAttention()
    items = [randn(rng, 100, 64) for _ in range(8)]  # too small to split inside one call
    expected = [attn.compute(x, x, x) for x in items]

    async def main():
        return await asyncio.gather(*(attn.compute_async(x, x, x) for _ in range(20) for x in items))

    results = []
    cpu = _cpu_per_thread(lambda: results.append(asyncio.run(main())))
    cpu.pop(threading.get_native_id())  # the event loop's thread
    assert sum(1 for ms in cpu.values() if ms > 1.0) >= 2, cpu  # both pool workers took calls
    for i, out in enumerate(results[0]):
        assert_same(out, expected[i % 8])


@needs_proc
def test_idle_pool_workers_sleep_instead_of_polling(rng, two_threads):
    # Workers poll for new tasks only briefly (kSpinBeforeSleep, 200 µs) after finishing one,
    # then sleep: an idle pool must not burn a CPU.
    attn = rv.DotProductAttention()
    x = randn(rng, 128, 64)

    async def eight_calls():
        return await asyncio.gather(*(attn.compute_async(x, x, x) for _ in range(8)))

    for _ in range(3):
        attn.compute_batch([x] * 16, [x] * 16, [x] * 16)
        asyncio.run(eight_calls())
    time.sleep(0.05)
    before = _thread_cpu_ms()
    time.sleep(0.4)
    after = _thread_cpu_ms()
    idle_cpu = {t: after[t] - before.get(t, 0.0) for t in after}
    assert sum(idle_cpu.values()) < 40.0, idle_cpu  # ms over 400 ms of idling: nobody spins

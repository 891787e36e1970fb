"""Run ruvector on a Dask cluster, one machine or many (docs/contract.md §10).

Two entry points, both lazy (they return a ``dask.array.Array``; nothing runs until it is
computed):

- :func:`batch` — a batch of sequences chunked along its leading axis; each chunk is one
  ``compute_batch(..., need_weights=False)`` on a worker.
- :func:`graph_attention` — one GAT/GATv2 layer over a graph whose node features are chunked by
  rows; each output row block is computed next to its own rows from a halo of the
  in-neighbours' rows, fetched as tasks from the blocks that hold them.

ruvector adds no scheduler, transport or retry logic: the tasks are pure functions of their
inputs, so Dask moves the data, places the tasks and recomputes whatever a lost worker held.
Import this module on demand (``import ruvector.dask``); ``import ruvector`` never needs Dask.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import annotate
    from dask.delayed import delayed
except ImportError as exc:  # pragma: no cover - exercised only without dask
    # The same class as the cause (ModuleNotFoundError when Dask is absent), with this advice.
    raise type(exc)(
        "ruvector.dask needs Dask with its distributed scheduler: pip install 'ruvector-latent[dask]'",
        name=exc.name,
    ) from exc

# The public names only: this module uses ruvector as any user of it would.
from . import (
    DotProductAttention,
    GraphAttention,
    GraphStructure,
    InvalidInputError,
    MultiHeadAttention,
    TemporalAttention,
    set_num_threads,
)

__all__ = ["batch", "graph_attention", "halo_rows"]

# The positional arrays each batchable mechanism's compute_batch takes, and the rank of each
# (batch axis included). TemporalAttention's timestamps are optional.
_BATCH_ARGS: dict[type, tuple[str, ...]] = {
    DotProductAttention: ("queries", "keys", "values"),
    MultiHeadAttention: ("queries", "keys", "values"),
    TemporalAttention: ("sequences", "timestamps"),
}
_BATCH_RANKS = {"queries": 3, "keys": 3, "values": 3, "sequences": 3, "timestamps": 2}


# --------------------------------------------------------------------------------------------
# Worker side: the pool takes the worker's Dask threads, once per process.

_pool_lock = threading.Lock()
_worker_threads: dict[str, int] = {}  # Dask workers seen in this process -> their threads


def _size_pool_to_worker() -> None:
    """Give this process's ruvector pool the Dask threads of the workers it hosts.

    A worker process with ``nthreads`` Dask threads runs up to that many tasks at once, and they
    all share the one process-wide pool, so a pool of ``nthreads`` keeps the process within its
    share of the machine (a pool as large as the machine, in each of several worker processes,
    would oversubscribe it). Outside a Dask worker (the local schedulers) nothing changes. Several
    workers in one process (``LocalCluster(processes=False)``) share the pool: it takes the sum.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    nthreads = worker.state.nthreads
    with _pool_lock:
        if _worker_threads.get(worker.id) == nthreads:
            return
        _worker_threads[worker.id] = nthreads
        set_num_threads(max(1, sum(_worker_threads.values())))


def _shared(obj: Any, prefix: str) -> Any:
    """``obj`` as one Dask key, named by its pickled content.

    Every task that uses it depends on that single key, so the object travels inside the graph
    once and reaches each worker once (a worker fetches a key it lacks one time and keeps it
    while tasks need it), instead of being pickled into every chunk's task.
    """
    digest = hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()[:32]
    return delayed(obj, name=f"{prefix}-{digest}", traverse=False)


# --------------------------------------------------------------------------------------------
# batch


def _batch_chunk(layer: Any, kwargs: dict[str, Any], *arrays: np.ndarray) -> np.ndarray:
    _size_pool_to_worker()
    outputs = layer.compute_batch(*arrays, need_weights=False, **kwargs)
    return np.stack([out.values for out in outputs])


def _chunks(array: da.Array) -> Any:
    """The array's chunks as Delayed objects, in order. The graph is not optimised here: fusing
    it would drop the placement annotations of an earlier call's tasks (the previous layer)."""
    return array.to_delayed(optimize_graph=False).ravel()


def _as_dask_array(array: Any, name: str) -> da.Array:
    if isinstance(array, da.Array):
        return array
    if array is None or isinstance(array, (str, bytes, dict)):
        raise InvalidInputError(f"{name} must be a Dask or NumPy array, got {type(array).__name__}")
    try:
        return da.from_array(np.asarray(array), chunks=-1)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a Dask or NumPy array: {exc}") from exc


def batch(layer: Any, *arrays: Any, **kwargs: Any) -> da.Array:
    """Run ``layer.compute_batch`` over a batch chunked along its leading axis.

    ``layer`` is a :class:`~ruvector.DotProductAttention` or
    :class:`~ruvector.MultiHeadAttention` (``arrays`` = queries ``[B, Lq, D]``, keys, values)
    or a :class:`~ruvector.TemporalAttention` (sequences ``[B, T, D]``, optional timestamps
    ``[B, T]``). Each array is a Dask or NumPy array; they are rechunked to the first array's
    chunks along B and to one chunk along every other axis. Each chunk is one
    ``compute_batch(..., need_weights=False, **kwargs)`` on a worker, and the layer reaches each
    worker once. ``kwargs`` are the mechanism's keyword options (``mask``, ``causal``,
    ``batch_config``, ...), the same for every item.

    Returns the values, a float32 Dask array ``[B, Lq, Dv]`` (dot-product), ``[B, Lq, E]``
    (multi-head) or ``[B, T, D]`` (temporal), chunked along B as the first array. One item is
    computed here first (on zeros of the items' shape), so a bad shape or option raises
    :class:`~ruvector.InvalidInputError` at the call, not later on a worker.
    """
    names = next((args for cls, args in _BATCH_ARGS.items() if isinstance(layer, cls)), None)
    if names is None:
        raise InvalidInputError(
            f"ruvector.dask.batch takes a DotProductAttention, MultiHeadAttention or TemporalAttention, "
            f"got {type(layer).__name__}; for GraphAttention use ruvector.dask.graph_attention"
        )
    required = 1 if isinstance(layer, TemporalAttention) else len(names)
    if not required <= len(arrays) <= len(names):
        wanted = f"{required}" if required == len(names) else f"{required} or {len(names)}"
        raise InvalidInputError(
            f"{type(layer).__name__} takes {wanted} batch arrays ({', '.join(names)}), got {len(arrays)}"
        )
    if kwargs.pop("need_weights", False):
        raise InvalidInputError("ruvector.dask.batch returns values only: drop need_weights=True")
    if "progress" in kwargs:
        raise InvalidInputError("progress is not available on a cluster: drop it (Dask's dashboard shows progress)")

    blocks = [_as_dask_array(a, n) for a, n in zip(arrays, names, strict=False)]
    for array, name in zip(blocks, names, strict=False):
        if array.ndim != _BATCH_RANKS[name]:
            raise InvalidInputError(
                f"{name} must be a {_BATCH_RANKS[name]}-D array with the batch axis first, got shape {array.shape}"
            )
        if any(math.isnan(s) for s in array.shape):
            raise InvalidInputError(f"{name} has unknown chunk sizes: call .compute_chunk_sizes() on it first")
    batch_size = blocks[0].shape[0]
    for array, name in zip(blocks[1:], names[1:], strict=False):
        if array.shape[0] != batch_size:
            raise InvalidInputError(
                f"{name} has {array.shape[0]} items, {names[0]} has {batch_size}: give one entry per item in each"
            )
    b_chunks = blocks[0].chunks[0]
    blocks = [a.rechunk((b_chunks,) + (-1,) * (a.ndim - 1)) for a in blocks]

    # One item on zeros, here: checks the shapes and options with ruvector's own messages and
    # gives the output's shape without reading any data.
    probe_items = [np.zeros(a.shape[1:], dtype=np.float32) for a in blocks]
    probe_options = {k: v for k, v in kwargs.items() if k != "batch_config"}
    item_shape = layer.compute(*probe_items, need_weights=False, **probe_options).values.shape

    layer_key = _shared(layer, "ruvector-layer")
    options = delayed(kwargs)  # one key too: a mask is not copied into every chunk's task
    task = delayed(_batch_chunk, pure=True)
    chunk_lists = [_chunks(a) for a in blocks]
    parts = [
        da.from_delayed(
            task(layer_key, options, *(chunks[i] for chunks in chunk_lists)),
            shape=(n, *item_shape),
            dtype=np.float32,
        )
        for i, n in enumerate(b_chunks)
        if n
    ]
    if not parts:
        return da.zeros((0, *item_shape), dtype=np.float32)
    return da.concatenate(parts, axis=0)


# --------------------------------------------------------------------------------------------
# graph_attention
#
# Task graph, for P row blocks of x and K chunks of edges:
#   split[k]      edges of chunk k bucketed by the row block of their target       (K tasks, P outputs each)
#   plan[b]       block b's in-edges, renumbered locally; which rows it needs from each other block
#   halo[b, c]    those rows, sliced from x's block c (runs where block c lives)  (P·(P-1) tasks)
#   out[b]        the layer on block b's rows + its halo, keeping block b's rows
# No task holds more than one block of x plus its halo.


def _edges_by_block(
    edge_index: np.ndarray, edge_features: np.ndarray | None, bounds: tuple[int, ...]
) -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
    """Bucket one chunk of edges by the row block that holds their target."""
    edge_index = np.asarray(edge_index)
    num_nodes = bounds[-1]
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        bad = edge_index[(edge_index < 0) | (edge_index >= num_nodes)][0]
        raise InvalidInputError(
            f"edge_index holds node {bad}, outside [0, {num_nodes}) for the {num_nodes} rows of x: "
            "every node id must be a row of x"
        )
    block = np.searchsorted(np.asarray(bounds[1:]), edge_index[1], side="right")
    order = np.argsort(block, kind="stable")  # keeps the edges' given order within a block
    starts = np.searchsorted(block[order], np.arange(len(bounds)))
    out = []
    for b in range(len(bounds) - 1):
        take = order[starts[b] : starts[b + 1]]
        out.append((edge_index[:, take], None if edge_features is None else np.asarray(edge_features)[take]))
    return tuple(out)


def _block_plan(b: int, bounds: tuple[int, ...], *pieces: tuple[np.ndarray, np.ndarray | None]) -> tuple[Any, ...]:
    """Block b's in-edges on local ids (its rows first, then its halo in global order), and for
    every block c the offsets within c of the halo rows it must send (empty for c == b)."""
    lo, hi = bounds[b], bounds[b + 1]
    edges = np.concatenate([p[0] for p in pieces], axis=1) if pieces else np.zeros((2, 0), np.int64)
    features = None
    if pieces and pieces[0][1] is not None:
        features = np.concatenate([p[1] for p in pieces], axis=0)
    sources = edges[0]
    outside = (sources < lo) | (sources >= hi)
    halo, halo_pos = np.unique(sources[outside], return_inverse=True)
    local = np.empty_like(edges)
    local[1] = edges[1] - lo
    local[0] = sources - lo
    local[0][outside] = (hi - lo) + halo_pos.reshape(-1)
    cuts = np.searchsorted(halo, np.asarray(bounds))
    requests = tuple(halo[cuts[c] : cuts[c + 1]] - bounds[c] for c in range(len(bounds) - 1))
    return ((local, features, len(halo)), *requests)


def _slice_rows(x_block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x_block[offsets])


def _gat_block(layer: Any, plan: Any, x_block: np.ndarray, *halos: np.ndarray) -> np.ndarray:
    _size_pool_to_worker()
    local_edges, features, _ = plan
    rows = np.concatenate([x_block, *halos], axis=0, dtype=np.float32) if halos else x_block
    graph = GraphStructure.from_edge_index(local_edges, rows.shape[0], edge_features=features)
    values = layer.compute(rows, graph, need_weights=False).values
    return values[: x_block.shape[0]]


# The workers an earlier graph_attention call chose for its output's blocks, by array name, so
# that the next layer reads each block where it is made (bounded: the most recent calls only).
_OUTPUT_HOMES: dict[str, list[str | None]] = {}


def _keys(array: da.Array) -> Any:
    """The chunk keys of a 2-D array: a list per row of chunks."""
    return array.__dask_keys__()


def _homes(x: da.Array, edges: da.Array) -> tuple[list[str | None], list[str | None]]:
    """The worker each row block of x lives on, and each chunk of edges: their tasks run there.

    A chunk in a worker's memory (persisted) stays where it is; the output of an earlier call
    stays where that call made it; other row blocks are spread in order over the current
    client's workers, and other edge chunks go with the row block of the same position.
    Without a distributed client: no placement.
    """
    num_blocks, num_chunks = len(x.chunks[0]), len(edges.chunks[1])
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return [None] * num_blocks, [None] * num_chunks
    workers = sorted(client.nthreads())
    held = client.who_has()

    def holder(key: Any) -> str | None:
        found = held.get(key) or ()
        return found[0] if found else None

    earlier = _OUTPUT_HOMES.get(x.name, [])
    if len(earlier) != num_blocks:
        earlier = [None] * num_blocks
    spread = [workers[b * len(workers) // num_blocks] if workers else None for b in range(num_blocks)]
    x_keys = [row[0] for row in _keys(x)]
    homes = [holder(key) or earlier[b] or spread[b] for b, key in enumerate(x_keys)]
    edge_keys = _keys(edges)[0]
    edge_homes = [holder(key) or homes[j * num_blocks // num_chunks] for j, key in enumerate(edge_keys)]
    return homes, edge_homes


def _on(worker: str | None) -> Any:
    """Run the tasks made in this block on `worker` while it lives, elsewhere if it is lost.

    Left to itself, Dask weighs load against transfers, and it places a group of many tasks
    with few inputs (as the slicing tasks are when there are few blocks) as if they read no
    data, so a block's tasks may run away from its rows and fetch the whole block. Dask drops
    these annotations when it fuses the graph (dask.array's default optimisation), which the
    returned :class:`PlacedArray` turns off for its own compute and persist.
    """
    if worker is None:
        return contextlib.nullcontext()
    return annotate(workers=[worker], allow_other_workers=True)


def _optimize_keeping_placement(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask.array's graph optimisation without its low-level fusion, which would drop the
    placement annotations of :func:`_on`."""
    with dask.config.set({"optimization.fuse.active": False}):
        return da.optimization.optimize(dsk, keys, **kwargs)


class PlacedArray(da.Array):
    """The array :func:`graph_attention` returns: a ``dask.array.Array`` whose ``compute`` and
    ``persist`` keep each row block's tasks beside its rows (dask.array's default optimisation
    fuses the graph and drops those annotations). An array derived from it by further dask.array
    operations is a plain Array again: compute those with
    ``dask.config.set({"optimization.fuse.active": False})`` to keep the placement."""

    __dask_optimize__ = staticmethod(_optimize_keeping_placement)


def _default_num_blocks() -> int:
    try:
        from distributed import get_client

        return max(1, len(get_client().nthreads()))
    except (ImportError, ValueError):
        return 2


def _row_chunks(x: Any) -> da.Array:
    if not isinstance(x, da.Array):
        x = _as_dask_array(x, "x")
        if x.ndim == 2:
            blocks = min(_default_num_blocks(), max(1, x.shape[0]))
            x = x.rechunk((math.ceil(x.shape[0] / blocks) or 1, -1))
    if x.ndim != 2:
        raise InvalidInputError(f"x must be node features [N, F], got shape {x.shape}")
    if any(math.isnan(c) for c in x.chunks[0]):
        raise InvalidInputError("x has unknown row chunk sizes: call x.compute_chunk_sizes() first")
    return x.rechunk({1: -1}) if len(x.chunks[1]) > 1 else x


def graph_attention(layer: Any, x: Any, edge_index: Any, *, edge_features: Any = None) -> da.Array:
    """One :class:`~ruvector.GraphAttention` layer over a graph whose features are chunked by rows.

    ``x`` is a Dask array ``[N, F]`` chunked by rows (a NumPy array is split into as many row
    blocks as the current Dask client has workers, 2 without a client); ``edge_index`` is PyG's
    ``[2, E]`` (source row, target row), NumPy or Dask; ``edge_features`` ``[E, edge_dim]``.

    x's row chunks are the partition: block b's output is computed next to block b, from its own
    rows plus the rows of other blocks that its targets' in-edges come from (its halo, fetched as
    small slicing tasks from the blocks that hold them). No task ever needs all of x, and nothing
    is re-partitioned, so the number of halo rows depends on how the nodes are numbered
    (:func:`halo_rows` counts them).

    Returns the values as a float32 Dask array chunked like x's rows, equal within float32
    rounding to ``layer.compute(x, GraphStructure.from_edge_index(edge_index, N)).values``, so
    the result is the ``x`` of the next layer. A layer built with ``in_features=None`` is
    initialised here with x's width, once, before it is shipped (as its first ``compute`` would).
    """
    if not isinstance(layer, GraphAttention):
        raise InvalidInputError(
            f"ruvector.dask.graph_attention takes a GraphAttention, got {type(layer).__name__}; "
            "for the other mechanisms use ruvector.dask.batch"
        )
    x = _row_chunks(x)
    width = x.shape[1]
    edges = _as_dask_array(edge_index, "edge_index")
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise InvalidInputError(f"edge_index must be [2, E] (PyG's layout), got shape {edges.shape}")
    if not np.issubdtype(edges.dtype, np.integer):
        raise InvalidInputError(f"edge_index must hold integers, got dtype {edges.dtype}")
    if math.isnan(edges.shape[1]):
        raise InvalidInputError("edge_index has unknown chunk sizes: call .compute_chunk_sizes() on it first")
    num_edges = edges.shape[1]
    if not isinstance(edge_index, da.Array):  # as many edge chunks as row blocks
        edges = edges.rechunk((2, max(1, math.ceil(num_edges / len(x.chunks[0])))))
    else:
        edges = edges.rechunk({0: -1})
    features = None
    if edge_features is not None:
        features = _as_dask_array(edge_features, "edge_features")
        if features.ndim != 2 or features.shape[0] != num_edges:
            raise InvalidInputError(
                f"edge_features must be [E, edge_dim] with E = {num_edges} (one row per edge), "
                f"got shape {features.shape}"
            )
        features = features.rechunk((edges.chunks[1], -1))

    # Initialise (in_features=None) and check the layer here, with x's width: every worker then
    # unpickles the same weights. The result also gives the output's width.
    probe_features = None if features is None else np.zeros((1, features.shape[1]), np.float32)
    probe = GraphStructure.from_edge_index(np.zeros((2, 1), np.int64), 1, edge_features=probe_features)
    out_width = layer.compute(np.zeros((1, width), np.float32), probe, need_weights=False).values.shape[1]

    bounds = tuple(int(v) for v in np.concatenate([[0], np.cumsum(x.chunks[0])]))
    num_blocks = len(bounds) - 1
    layer_key = _shared(layer, "ruvector-layer")
    x_blocks, edge_chunks = _chunks(x), _chunks(edges)
    feature_chunks = [None] * len(edge_chunks) if features is None else _chunks(features)
    home, edge_home = _homes(x, edges)

    split = delayed(_edges_by_block, pure=True, nout=num_blocks)
    plan_task = delayed(_block_plan, pure=True, nout=num_blocks + 1)
    halo_task = delayed(_slice_rows, pure=True)
    gat_task = delayed(_gat_block, pure=True)
    buckets = []
    for j, (e, f) in enumerate(zip(edge_chunks, feature_chunks, strict=True)):
        with _on(edge_home[j]):
            pieces = split(e, f, bounds)
            buckets.append([pieces[b] for b in range(num_blocks)])
    plans = []  # per block: (its local graph, the rows it wants from each block)
    for b in range(num_blocks):
        with _on(home[b]):
            local_graph, *wanted = plan_task(b, bounds, *(bucket[b] for bucket in buckets))
            plans.append((local_graph, wanted))
    parts = []
    for b, (local_graph, wanted) in enumerate(plans):
        halos = []
        for c in range(num_blocks):
            if c != b:
                with _on(home[c]):  # sliced where block c lives; only the slice travels
                    halos.append(halo_task(x_blocks[c], wanted[c]))
        with _on(home[b]):
            out = gat_task(layer_key, local_graph, x_blocks[b], *halos)
        parts.append(da.from_delayed(out, shape=(bounds[b + 1] - bounds[b], out_width), dtype=np.float32))
    result = da.concatenate(parts, axis=0)
    result = PlacedArray(result.dask, result.name, result.chunks, meta=result._meta)
    if any(home):
        while len(_OUTPUT_HOMES) >= 64:
            del _OUTPUT_HOMES[next(iter(_OUTPUT_HOMES))]
        _OUTPUT_HOMES[result.name] = home
    return result


def halo_rows(edge_index: Any, row_chunks: Sequence[int]) -> np.ndarray:
    """How many rows each block would fetch from each other block, before computing anything.

    ``row_chunks`` are x's row chunk sizes (``x.chunks[0]``). Returns an integer matrix
    ``[P, P]`` whose entry (b, c) is the number of distinct rows of block c that block b's
    targets receive edges from (zero on the diagonal). ``halo_rows(...).sum() * F * 4`` is the
    number of feature bytes one :func:`graph_attention` call moves between blocks. Renumber the
    nodes so that this is small (docs: the scale-out guide).
    """
    edges = np.asarray(edge_index)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise InvalidInputError(f"edge_index must be [2, E] (PyG's layout), got shape {edges.shape}")
    bounds = np.concatenate([[0], np.cumsum(np.asarray(row_chunks, dtype=np.int64))])
    num_blocks = len(bounds) - 1
    src_block = np.searchsorted(bounds[1:], edges[0], side="right")
    dst_block = np.searchsorted(bounds[1:], edges[1], side="right")
    cross = src_block != dst_block
    pairs = np.unique(np.stack([dst_block[cross], edges[0][cross]]), axis=1)  # (block b, source row)
    counts = np.zeros((num_blocks, num_blocks), dtype=np.int64)
    np.add.at(counts, (pairs[0], np.searchsorted(bounds[1:], pairs[1], side="right")), 1)
    return counts

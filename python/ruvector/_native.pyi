"""Type stubs of the native module, kept by hand; tests/python/test_stubs.py runs mypy.stubtest."""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, overload

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float32]

def get_features() -> list[str]: ...
def get_simd_backend() -> str: ...
def set_simd_backend(name: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def _init_from_env() -> None: ...
def _amx_available() -> bool: ...
def _amx_enabled() -> bool: ...
def _set_amx_enabled(on: bool) -> None: ...
def _amx_tile_gflops(seconds: float = 0.002) -> float: ...
def _gemm_gflops(seconds: float = 0.2) -> float: ...
def _fma_peak_gflops(seconds: float = 0.1) -> float: ...
def _microkernel_gflops(seconds: float = 0.1) -> float: ...
def _exp_per_second(seconds: float = 0.05) -> float: ...
def _available_backends() -> list[str]: ...
def _run_jobs(jobs: Sequence[_Job], max_workers: int = 0) -> list[AttentionOutput]: ...
def _submit_jobs(
    jobs: Sequence[_Job],
    max_workers: int,
    callback: Callable[[list[AttentionOutput] | None, BaseException | None], object],
) -> _AsyncTicket: ...

class _AsyncTicket:
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

# POSIX only (absent on Windows): hands finished async calls back to one event loop.
class _CompletionChannel:
    def __init__(self) -> None: ...
    def fileno(self) -> int: ...
    def submit(
        self, jobs: Sequence[_Job], max_workers: int, future: asyncio.Future[list[AttentionOutput]]
    ) -> _AsyncTicket: ...
    def submit_one(self, job: _Job, future: asyncio.Future[AttentionOutput]) -> _AsyncTicket: ...
    def drain(self) -> None: ...
    def close_reader(self) -> None: ...

class _Job:
    def run(self) -> AttentionOutput: ...

class AttentionConfig:
    def __init__(
        self,
        num_heads: int = 8,
        head_dim: int = 64,
        dropout: float = 0.1,
        use_bias: bool = True,
        scale: float | None = None,
        seed: int = 0,
    ) -> None: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def use_bias(self) -> bool: ...
    @property
    def scale(self) -> float | None: ...
    @property
    def seed(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

ConfigLike = AttentionConfig | dict[str, Any] | None

class AttentionOutput:
    def __init__(self, values: Any, weights: Any = None, metadata: Any = None) -> None: ...
    @property
    def values(self) -> FloatArray: ...
    @property
    def weights(self) -> FloatArray | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...

class DotProductAttention:
    def __init__(self, config: ConfigLike = None) -> None: ...
    @property
    def config(self) -> AttentionConfig: ...
    def compute(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> AttentionOutput: ...
    def _prepare(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> _Job: ...
    def _prepare_stacked(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> list[_Job]: ...
    def _probe_parse(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> None: ...
    def _probe_output(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> tuple[FloatArray, FloatArray | None]: ...
    def _probe_metadata(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        training: bool = False,
    ) -> AttentionOutput: ...

class MultiHeadAttention:
    def __init__(
        self,
        config: ConfigLike = None,
        *,
        embed_dim: int | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
    ) -> None: ...
    @property
    def config(self) -> AttentionConfig: ...
    @property
    def embed_dim(self) -> int: ...
    @property
    def kdim(self) -> int: ...
    @property
    def vdim(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def add_bias_kv(self) -> bool: ...
    @property
    def add_zero_attn(self) -> bool: ...
    def get_weights(self) -> dict[str, FloatArray]: ...
    def set_weights(self, weights: Mapping[str, ArrayLike]) -> None: ...
    def compute(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        key_padding_mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        average_weights: bool = True,
        training: bool = False,
    ) -> AttentionOutput: ...
    def _prepare(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        mask: ArrayLike | None = None,
        key_padding_mask: ArrayLike | None = None,
        causal: bool = False,
        need_weights: bool = True,
        average_weights: bool = True,
        training: bool = False,
    ) -> _Job: ...

class TemporalAttention:
    def __init__(
        self,
        config: ConfigLike = None,
        *,
        causal: bool = True,
        decay_rate: float | None = None,
        half_life: float | None = None,
        window: float | None = None,
    ) -> None: ...
    @property
    def config(self) -> AttentionConfig: ...
    @property
    def causal(self) -> bool: ...
    @property
    def decay_rate(self) -> float: ...
    @property
    def half_life(self) -> float | None: ...
    @property
    def window(self) -> float | None: ...
    def compute(
        self, sequence: ArrayLike, timestamps: ArrayLike | None = None, *, need_weights: bool = True
    ) -> AttentionOutput: ...
    def _prepare(
        self, sequence: ArrayLike, timestamps: ArrayLike | None = None, *, need_weights: bool = True
    ) -> _Job: ...

class HierarchicalAttention:
    def __init__(self, config: ConfigLike = None) -> None: ...
    @property
    def config(self) -> AttentionConfig: ...
    def compute(
        self,
        levels: ArrayLike | Sequence[ArrayLike],
        level_weights: ArrayLike | None = None,
        *,
        query: ArrayLike | None = None,
        need_weights: bool = True,
    ) -> AttentionOutput: ...
    def _prepare(
        self,
        levels: ArrayLike | Sequence[ArrayLike],
        level_weights: ArrayLike | None = None,
        *,
        query: ArrayLike | None = None,
        need_weights: bool = True,
    ) -> _Job: ...

_NodeCount: TypeAlias = int | tuple[int, int]  # N, or (N_src, N_dst) for a bipartite graph

class GraphStructure:
    def __init__(self, edges: ArrayLike, num_nodes: _NodeCount, edge_features: ArrayLike | None = None) -> None: ...
    @staticmethod
    @overload
    def from_edge_index(
        ei: ArrayLike, num_nodes: _NodeCount, edge_features: ArrayLike | None = None
    ) -> GraphStructure: ...
    @staticmethod
    @overload
    def from_edge_index(
        *, edge_index: ArrayLike, num_nodes: _NodeCount, edge_features: ArrayLike | None = None
    ) -> GraphStructure: ...
    @property
    def num_nodes(self) -> _NodeCount: ...
    @property
    def num_edges(self) -> int: ...
    @property
    def edge_feature_dim(self) -> int | None: ...
    @property
    def has_self_loops(self) -> bool: ...
    @property
    def edges(self) -> npt.NDArray[np.int64]: ...
    @property
    def edge_index(self) -> npt.NDArray[np.int64]: ...
    @property
    def edge_features(self) -> FloatArray | None: ...

class GraphAttention:
    def __init__(
        self,
        config: ConfigLike = None,
        *,
        in_features: int | tuple[int, int] | None = None,
        concat: bool = True,
        negative_slope: float = 0.2,
        add_self_loops: bool = True,
        edge_dim: int | None = None,
        variant: str = "gat",
        fill_value: float | str = "mean",
        residual: bool = False,
        share_weights: bool = False,
    ) -> None: ...
    @property
    def config(self) -> AttentionConfig: ...
    @property
    def in_features(self) -> int | tuple[int, int] | None: ...
    @property
    def out_features(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def concat(self) -> bool: ...
    @property
    def negative_slope(self) -> float: ...
    @property
    def add_self_loops(self) -> bool: ...
    @property
    def edge_dim(self) -> int | None: ...
    @property
    def variant(self) -> str: ...
    @property
    def fill_value(self) -> float | str: ...
    @property
    def residual(self) -> bool: ...
    @property
    def share_weights(self) -> bool: ...
    def compute(
        self,
        node_features: ArrayLike | tuple[ArrayLike, ArrayLike],
        graph: GraphStructure | ArrayLike,
        *,
        need_weights: bool = True,
        targets: ArrayLike | None = None,
    ) -> AttentionOutput: ...
    def _prepare(
        self,
        node_features: ArrayLike | tuple[ArrayLike, ArrayLike],
        graph: GraphStructure | ArrayLike,
        *,
        need_weights: bool = True,
        targets: ArrayLike | None = None,
    ) -> _Job: ...
    def get_weights(self) -> dict[str, FloatArray]: ...
    def set_weights(self, weights: Mapping[str, ArrayLike]) -> None: ...

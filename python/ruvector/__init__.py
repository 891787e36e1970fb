"""ruvector: fast CPU attention mechanisms for graph-neural-network latent spaces.

Every mechanism takes float32 NumPy arrays (a C-contiguous float32 array is read without a
copy) and returns an :class:`AttentionOutput` whose arrays own their C++ buffers.
"""

from __future__ import annotations

from . import _graph, _hierarchical, _multi_head, _native, _temporal
from ._batch import BatchConfig
from ._errors import (
    ComputationError,
    DimensionMismatchError,
    InvalidConfigError,
    InvalidInputError,
    RuVectorError,
)
from ._graph import *  # noqa: F403
from ._hierarchical import *  # noqa: F403
from ._io import load
from ._mechanisms import DotProductAttention
from ._multi_head import *  # noqa: F403  (each mechanism's module lists its names in __all__)
from ._native import (
    AttentionConfig,
    AttentionOutput,
    get_features,
    get_num_threads,
    get_simd_backend,
    set_num_threads,
    set_simd_backend,
)
from ._temporal import *  # noqa: F403
from ._version import __version__

# RUVECTOR_SIMD and RUVECTOR_NUM_THREADS act at import; a bad value fails the import loudly.
_native._init_from_env()


def get_version() -> str:
    """The package version (one source: ruvector/_version.py)."""
    return __version__


def init() -> str:
    """Initialise the native module. Import already did (reading RUVECTOR_SIMD and
    RUVECTOR_NUM_THREADS once), so this changes nothing: settings made since stay."""
    return "RuVector native module initialized"


__all__ = [
    *_multi_head.__all__,
    *_graph.__all__,
    *_temporal.__all__,
    *_hierarchical.__all__,
    "AttentionConfig",
    "AttentionOutput",
    "BatchConfig",
    "ComputationError",
    "DimensionMismatchError",
    "DotProductAttention",
    "InvalidConfigError",
    "InvalidInputError",
    "RuVectorError",
    "__version__",
    "get_features",
    "get_num_threads",
    "get_simd_backend",
    "get_version",
    "init",
    "load",
    "set_num_threads",
    "set_simd_backend",
]

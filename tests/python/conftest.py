"""Shared fixtures: every numeric test runs on every SIMD backend this machine has."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import ruvector
from ruvector import _native

BACKENDS = _native._available_backends()
# Where the avx512 backend can use AMX tiles, it runs once with them (the default, "avx512")
# and once on its FMA path alone ("avx512-fma").
KERNEL_SETS = BACKENDS + (["avx512-fma"] if "avx512" in BACKENDS and _native._amx_available() else [])


@pytest.fixture(params=KERNEL_SETS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Forces one SIMD backend (and AMX on or off) for the test, then restores both."""
    previous, amx = ruvector.get_simd_backend(), _native._amx_enabled()
    name = "avx512" if request.param == "avx512-fma" else request.param
    ruvector.set_simd_backend(name)
    if request.param == "avx512-fma":
        _native._set_amx_enabled(False)
    try:
        yield name
    finally:
        ruvector.set_simd_backend(previous)
        _native._set_amx_enabled(amx)


@pytest.fixture(autouse=True)
def _keep_simd_backend() -> Iterator[None]:
    """Every test leaves the backend (and AMX) as it found it (several switch backends and end
    with "auto", which would undo RUVECTOR_SIMD for the tests after them and for spawned
    children)."""
    previous, amx = ruvector.get_simd_backend(), _native._amx_enabled()
    yield
    ruvector.set_simd_backend(previous)
    _native._set_amx_enabled(amx)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random float32 data, never zeros."""
    return rng.standard_normal(shape).astype(np.float32)

"""Shared fixtures: every numeric test runs on every SIMD backend this machine has."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import ruvector
from ruvector import _native

BACKENDS = _native._available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Forces one SIMD backend for the test, then restores automatic selection."""
    previous = ruvector.get_simd_backend()
    ruvector.set_simd_backend(request.param)
    try:
        yield request.param
    finally:
        ruvector.set_simd_backend(previous)


@pytest.fixture(autouse=True)
def _keep_simd_backend() -> Iterator[None]:
    """Every test leaves the backend as it found it (several switch backends and end with
    "auto", which would undo RUVECTOR_SIMD for the tests after them and for spawned children)."""
    previous = ruvector.get_simd_backend()
    yield
    ruvector.set_simd_backend(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random float32 data, never zeros."""
    return rng.standard_normal(shape).astype(np.float32)

"""The process's own limits: a pool whose threads the system will not start gives a typed error
and leaves the previous pool working (docs/contract.md §6: never a crash or a hang).

Each case runs in a child process, since it lowers that process's address-space limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS as Linux applies it")

# In the child: imports and a first call made, then an address-space limit ~256 MB above what
# the process has mapped, far too little for 200 threads' 8 MB stacks (pthread's default).
_CHILD_PRELUDE = """
import resource
import numpy as np
import ruvector as rv

x = np.random.default_rng(0).standard_normal((64, 16), dtype=np.float32)
expected = rv.DotProductAttention().compute(x, x, x).values
with open("/proc/self/status") as status:
    vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
limit = (vm_kb + 256 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""


def _run_child(body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = _CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_set_num_threads_beyond_the_limit_raises_and_keeps_the_pool() -> None:
    child = _run_child(
        """
        before = rv.get_num_threads()
        for n in (200, 4096):
            try:
                rv.set_num_threads(n)
            except rv.InvalidConfigError as e:
                assert "choose a smaller num_threads" in str(e), e
            else:
                raise AssertionError(f"set_num_threads({n}) under a 256 MB headroom did not fail")
            assert rv.get_num_threads() == before
            np.testing.assert_array_equal(rv.DotProductAttention().compute(x, x, x).values, expected)
        rv.set_num_threads(2)  # a size the limit allows still works
        assert rv.get_num_threads() == 2
        np.testing.assert_array_equal(rv.DotProductAttention().compute(x, x, x).values, expected)
        print("ok")
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().endswith("ok")


def test_env_thread_count_beyond_the_limit_fails_the_import_with_a_typed_error() -> None:
    # The limit is set before ruvector is imported here, so RUVECTOR_NUM_THREADS acts on it.
    code = textwrap.dedent(
        """
        import resource
        with open("/proc/self/status") as status:
            vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        limit = (vm_kb + 512 * 1024) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            import ruvector
        except Exception as e:
            print(type(e).__name__, e)
        else:
            print("imported", ruvector.get_num_threads())
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUVECTOR_NUM_THREADS": "4000"},
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("InvalidConfigError"), child.stdout
    assert "RUVECTOR_NUM_THREADS=4000" in child.stdout and "could not start" in child.stdout


# ---------------------------------------------------------------------------------------------
# Issue 19 item 5: large requests are refused as a whole, before anything is allocated.

# Before the import (the limit is read once): an address space of what is mapped + `head`.
_LIMIT_FIRST = """
import resource, time
import numpy as np
with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
head = vm + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (vm + head, vm + head))
import ruvector as rv
"""


def _run_limited(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LIMIT_FIRST + textwrap.dedent(body)], capture_output=True, text=True, timeout=120
    )


def test_graph_attention_weights_are_checked_together_before_allocating() -> None:
    # Four buffers of head/2 bytes each: every one fits, all four (2 x head) do not.
    child = _run_limited(
        """
        head_dim = 2**15
        heads = (head // 2) // (4 * head_dim)
        t0 = time.perf_counter()
        try:
            rv.GraphAttention(rv.AttentionConfig(num_heads=heads, head_dim=head_dim), in_features=1)
        except rv.InvalidInputError as e:
            assert "all together" in str(e), e
            print("refused", time.perf_counter() - t0 < 1.0)
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["refused", "True"]


def test_stacked_batch_is_checked_as_a_whole_before_preparing_items() -> None:
    child = _run_limited(
        """
        b = head // 1024  # ~2 KB an item: twice what the limit leaves
        s = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (b, 1, 1), (0, 0, 0))
        t0 = time.perf_counter()
        try:
            rv.DotProductAttention().compute_batch(s, s, s)
        except rv.InvalidInputError as e:
            assert "split the batch" in str(e), e
            print("refused", time.perf_counter() - t0 < 1.0)
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["refused", "True"]


def _zero_stride(shape: tuple[int, ...]):
    import numpy as np

    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))


@pytest.mark.parametrize("rows", [65536, 2**33])
def test_zero_width_values_without_weights_give_the_empty_result_at_once(rows: int) -> None:
    import time

    import ruvector as rv

    z = _zero_stride((rows, 0))
    t0 = time.perf_counter()
    out = rv.DotProductAttention().compute(z, z, z, need_weights=False)
    assert out.values.shape == (rows, 0) and out.weights is None
    assert time.perf_counter() - t0 < 0.5  # was seconds of O(L^2) work at 65536, bad_alloc at 2^33


def test_zero_width_keys_give_uniform_attention_as_numpy() -> None:
    import numpy as np

    import ruvector as rv

    v = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    q, k = np.zeros((5, 0), np.float32), np.zeros((7, 0), np.float32)
    out = rv.DotProductAttention().compute(q, k, v)
    scores = q.astype(np.float64) @ k.T.astype(np.float64)  # all 0
    w = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.weights, w, rtol=1e-6)
    np.testing.assert_allclose(out.values, w @ v.astype(np.float64), rtol=1e-5, atol=1e-6)

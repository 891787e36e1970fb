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

"""Module-level functions (docs/contract.md §2), config (docs/contract.md §3) and environment variables."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import ruvector as rv
from ruvector import _native


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_version_has_one_source():
    from ruvector._version import __version__

    assert rv.__version__ == rv.get_version() == __version__ == "0.1.0"


def test_init_is_idempotent():
    assert rv.init() == "RuVector native module initialized"
    assert rv.init() == "RuVector native module initialized"


def test_init_keeps_settings_made_after_import():
    code = (
        "import ruvector as rv; rv.set_num_threads(1); rv.set_simd_backend('scalar'); rv.init(); "
        "print(rv.get_num_threads(), rv.get_simd_backend())"
    )
    out = run_python(code, RUVECTOR_NUM_THREADS="2", RUVECTOR_SIMD="auto")
    assert out.stdout.split() == ["1", "scalar"], out.stderr


def test_features_and_backend():
    features = rv.get_features()
    assert isinstance(features, list) and all(isinstance(f, str) for f in features)
    rv.set_simd_backend("auto")  # detection, whatever RUVECTOR_SIMD chose (conftest restores it)
    backend = rv.get_simd_backend()
    assert backend in {"avx512", "avx2", "neon", "scalar"}
    if "avx512f" in features and "avx512bw" in features:
        assert backend == "avx512"
    elif "avx2" in features and "fma" in features:
        assert backend == "avx2"


def test_set_simd_backend_forces_and_restores():
    rv.set_simd_backend("auto")  # conftest restores the backend RUVECTOR_SIMD chose
    original = rv.get_simd_backend()
    try:
        for name in _native._available_backends():
            rv.set_simd_backend(name)
            assert rv.get_simd_backend() == name
        rv.set_simd_backend("auto")
        assert rv.get_simd_backend() == original
    finally:
        rv.set_simd_backend("auto")


@pytest.mark.parametrize("name", ["sse9", "", "AVX512 ", "gpu"])
def test_unknown_backend_is_a_config_error(name):
    with pytest.raises(rv.InvalidConfigError, match="auto"):
        rv.set_simd_backend(name)


def test_unsupported_backend_is_a_config_error():
    missing = {"avx512", "avx2", "neon", "scalar"} - set(_native._available_backends())
    assert missing, "every backend is supported here?"  # x86 always lacks neon, arm lacks avx
    for name in missing:
        with pytest.raises(rv.InvalidConfigError, match=name):
            rv.set_simd_backend(name)


def test_env_forces_backend_at_import():
    out = run_python("import ruvector; print(ruvector.get_simd_backend())", RUVECTOR_SIMD="scalar")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scalar"


@pytest.mark.parametrize("value", ["bogus", "neon" if sys.platform != "darwin" else "avx2"])
def test_bad_env_backend_fails_import_naming_variable(value):
    if value in _native._available_backends():
        pytest.skip("backend is supported here")
    out = run_python("import ruvector", RUVECTOR_SIMD=value)
    assert out.returncode != 0
    assert "InvalidConfigError" in out.stderr and "RUVECTOR_SIMD" in out.stderr


def test_amx_switch():
    """The avx512 backend's AMX tiles: listed in get_features() when usable, on by default,
    RUVECTOR_AMX=0 turns them off at import, a bad value fails the import naming it."""
    available = _native._amx_available()
    assert ("amx_bf16" in rv.get_features()) == available
    # The child reports its own availability: under an emulator (qemu-user) the child may run
    # on the real CPU while this process sees the emulated one.
    code = "from ruvector import _native; print(_native._amx_available(), _native._amx_enabled())"
    out = run_python(code, RUVECTOR_AMX="auto")
    assert out.returncode == 0, out.stderr
    child_available, enabled = out.stdout.split()
    assert enabled == child_available
    out = run_python(code, RUVECTOR_AMX="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "False"
    out = run_python("import ruvector", RUVECTOR_AMX="maybe")
    assert out.returncode != 0
    assert "InvalidConfigError" in out.stderr and "RUVECTOR_AMX" in out.stderr
    if not available:
        with pytest.raises(rv.InvalidConfigError, match="AMX"):
            _native._set_amx_enabled(True)


def test_amx_tile_rate():
    """The benchmark's tile-speed probe: a positive float32-equivalent GFLOP/s where AMX is
    available, 0 where not; a duration outside (0, 10] seconds is refused."""
    rate = _native._amx_tile_gflops(0.002)
    if _native._amx_available():
        assert 1.0 < rate < 10000.0
    else:
        assert rate == 0.0
    for bad in (0.0, -1.0, 11.0, float("nan")):
        with pytest.raises(rv.InvalidInputError, match="seconds"):
            _native._amx_tile_gflops(bad)


def test_ceiling_probes(backend):
    """The benchmarks' limits measured on our own kernels: a GEMM rate and an exp rate that a
    2-core machine of any ISA reaches (scalar loops included) and no machine exceeds by far;
    a duration outside (0, 10] seconds is refused."""
    gemm, peak = _native._gemm_gflops(0.05), _native._fma_peak_gflops(0.05)
    micro = _native._microkernel_gflops(0.05)
    assert 0.2 < gemm < 1e5 and 0.2 < peak < 1e5
    # the micro-kernel on L1 data: no faster than the FMA units (a probe the compiler had
    # folded reported 4x their peak), and faster than a whole 1024^3 product around it
    # (best rounds of a short period: with a margin for a noisy machine)
    assert 0.5 * gemm < micro < 1.25 * peak
    assert 1e7 < _native._exp_per_second(0.02) < 1e12
    probes = (_native._gemm_gflops, _native._fma_peak_gflops, _native._microkernel_gflops, _native._exp_per_second)
    for probe in probes:
        for bad in (0.0, -1.0, 11.0, float("nan")):
            with pytest.raises(rv.InvalidInputError, match="seconds"):
                probe(bad)


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), [(2, 2, 2, 2), (5, 3, 7, 4), (1, 9, 16, 1)])
def test_probe_call_stages(backend, lq, lk, d, dv):
    """The 2×2 row's limit (bench/compare_dot_product.py): DotProductAttention's _probe_* stop
    compute before the arithmetic. _probe_parse returns None; _probe_output the unwritten output
    as NumPy arrays shaped as compute's; _probe_metadata an AttentionOutput whose metadata is
    compute's."""
    rng = np.random.default_rng(lq * 100 + lk)
    q = rng.standard_normal((lq, d), dtype=np.float32)
    k = rng.standard_normal((lk, d), dtype=np.float32)
    v = rng.standard_normal((lk, dv), dtype=np.float32)
    attn = rv.DotProductAttention({"scale": 0.25} if d == 7 else None)
    for weights in (True, False):
        full = attn.compute(q, k, v, need_weights=weights)
        assert attn._probe_parse(q, k, v, need_weights=weights) is None
        values, w = attn._probe_output(q, k, v, need_weights=weights)
        assert values.dtype == np.float32 and values.shape == full.values.shape == (lq, dv)
        if weights:
            assert w.dtype == np.float32 and w.shape == full.weights.shape == (lq, lk)
        else:
            assert w is None
        out = attn._probe_metadata(q, k, v, need_weights=weights)
        assert isinstance(out, rv.AttentionOutput)
        assert out.metadata == full.metadata and out.metadata["simd_backend"] == backend
        assert out.values.shape == full.values.shape
        assert (out.weights is None) == (full.weights is None)


def test_probe_call_validates_as_compute():
    """Bad input to a probe raises what compute raises, the same type and message (but for the
    method's name in pybind11's own signature error): the probes go through compute's own
    argument list, conversion and checks."""
    x = np.ones((3, 4), np.float32)
    bad_calls = [
        ((x, np.ones((3, 5), np.float32), x), {}),  # key's columns differ from query's
        ((x, x, np.ones((2, 4), np.float32)), {}),  # one value row per key
        ((np.ones((2, 3, 4), np.float32), x, x), {}),  # 3-D query
        (("q", x, x), {}),
        ((x, x, x), {"mask": np.ones((2, 2), bool)}),
        ((x, x, x), {"mask": np.ones((3, 3), np.int32)}),
        ((x, x, x), {"causal": "yes"}),  # pybind11's own check of the signature
    ]
    attn = rv.DotProductAttention()
    for args, kwargs in bad_calls:
        with pytest.raises(Exception) as expected:
            attn.compute(*args, **kwargs)
        for probe in (attn._probe_parse, attn._probe_output, attn._probe_metadata):
            with pytest.raises(type(expected.value)) as got:
                probe(*args, **kwargs)
            assert type(got.value) is type(expected.value)
            assert str(got.value).replace(probe.__name__, "compute") == str(expected.value)


@pytest.mark.parametrize("call", ["compute", "compute_batch", "graph"])
def test_daemon_threads_inside_sync_calls_at_exit(call):
    """Daemon threads still inside synchronous calls when the interpreter exits: the process
    ends cleanly (CPython ends such threads with pthread_exit as they take the GIL back; that
    forced unwind used to hit a noexcept destructor and abort with exit status 134)."""
    code = f"""
import threading, time
import numpy as np, ruvector as rv
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 64), dtype=np.float32)
b = rng.standard_normal((8, 64, 32), dtype=np.float32)
edges = rng.integers(0, 300, (3000, 2))
calls = {{
    "compute": lambda: rv.DotProductAttention().compute(x, x, x, need_weights=False),
    "compute_batch": lambda: rv.DotProductAttention().compute_batch(b, b, b),
    "graph": lambda: rv.GraphAttention({{"num_heads": 2, "head_dim": 8}}).compute(x, rv.GraphStructure(edges, 300)),
}}
def loop():
    while True:
        calls["{call}"]()
for _ in range(3):
    threading.Thread(target=loop, daemon=True).start()
time.sleep(0.3)
print("exiting", flush=True)
"""
    for _ in range(3):
        out = run_python(code)
        assert out.returncode == 0 and out.stdout.strip() == "exiting", (out.returncode, out.stderr[-500:])


def test_threads():
    default = rv.get_num_threads()
    assert default == len(os.sched_getaffinity(0))
    try:
        rv.set_num_threads(1)
        assert rv.get_num_threads() == 1
        rv.set_num_threads(3)
        assert rv.get_num_threads() == 3
    finally:
        rv.set_num_threads(default)
    for bad in (0, -2):
        with pytest.raises(rv.InvalidConfigError):
            rv.set_num_threads(bad)


def test_env_threads():
    out = run_python("import ruvector; print(ruvector.get_num_threads())", RUVECTOR_NUM_THREADS="3")
    assert out.stdout.strip() == "3", out.stderr
    bad = run_python("import ruvector", RUVECTOR_NUM_THREADS="many")
    assert bad.returncode != 0 and "RUVECTOR_NUM_THREADS" in bad.stderr


def test_affinity_sets_default_threads():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity API")
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}}); import ruvector; print(ruvector.get_num_threads())"
    assert run_python(code).stdout.strip() == "1"


class TestAttentionConfig:
    def test_defaults(self):
        c = rv.AttentionConfig()
        assert (c.num_heads, c.head_dim, c.dropout, c.use_bias, c.scale, c.seed) == (8, 64, 0.1, True, None, 0)

    def test_values_and_repr_and_pickle(self):
        c = rv.AttentionConfig(num_heads=2, head_dim=16, dropout=0.0, use_bias=False, scale=0.5, seed=9)
        assert "num_heads=2" in repr(c) and "scale=0.5" in repr(c)
        assert pickle.loads(pickle.dumps(c)) == c
        assert c.to_dict()["seed"] == 9

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("num_heads", 0),
            ("head_dim", -1),
            ("dropout", 1.0),
            ("dropout", -0.1),
            ("dropout", float("nan")),
            ("scale", 0.0),
            ("scale", -1.0),
            ("scale", float("inf")),
            ("scale", float("nan")),
            ("scale", 1e300),
            ("scale", 1e-300),
            ("num_heads", 2**40),
            ("head_dim", 2.5),
            ("seed", -1),
            ("seed", 2**64),
        ],
    )
    def test_invalid_values_name_the_field(self, field, value):
        with pytest.raises(rv.InvalidConfigError, match=field):
            rv.AttentionConfig(**{field: value})
        with pytest.raises(rv.InvalidConfigError, match=field):
            rv.DotProductAttention({field: value})

    def test_positional_arguments_and_numpy_integers(self):
        c = rv.AttentionConfig(4, 32, 0.0, False, 0.5, 2**63)
        assert (c.num_heads, c.head_dim, c.dropout, c.use_bias, c.scale, c.seed) == (4, 32, 0.0, False, 0.5, 2**63)
        assert rv.AttentionConfig(num_heads=np.int64(2)).num_heads == 2

    def test_unknown_key_in_dict(self):
        with pytest.raises(rv.InvalidConfigError, match="num_head"):
            rv.DotProductAttention({"num_head": 2})

    def test_unknown_keyword_and_wrong_types_are_config_errors(self):
        """As for a dict: unknown keywords and values of the wrong type name the field."""
        with pytest.raises(rv.InvalidConfigError, match=r"unknown config key 'num_head'.*num_heads"):
            rv.AttentionConfig(num_head=2)
        for kwargs, field in [
            ({"dropout": "0.1"}, "dropout"),
            ({"dropout": None}, "dropout"),
            ({"scale": "big"}, "scale"),
            ({"scale": 1j}, "scale"),
            ({"use_bias": 1}, "use_bias"),
            ({"use_bias": "yes"}, "use_bias"),
        ]:
            with pytest.raises(rv.InvalidConfigError, match=field):
                rv.AttentionConfig(**kwargs)
        with pytest.raises(rv.InvalidConfigError, match=r"use_bias must be True or False, got an array of shape"):
            rv.AttentionConfig(use_bias=np.array([True, False]))
        with pytest.raises(rv.InvalidConfigError, match="dropout must be a real number within float range"):
            rv.AttentionConfig(dropout=10**400)

        class RaisingNumber:  # __index__ / __float__ that raise: a typed error, not SystemError
            def __index__(self) -> int:
                raise RuntimeError("no")

            def __float__(self) -> float:
                raise RuntimeError("no")

        for field in ("num_heads", "head_dim", "seed", "dropout", "scale"):
            with pytest.raises(rv.InvalidConfigError, match=field):
                rv.AttentionConfig(**{field: RaisingNumber()})
        with pytest.raises(rv.InvalidInputError, match="num_nodes must be an integer"):
            rv.GraphStructure([(0, 1)], RaisingNumber())
        with pytest.raises(rv.InvalidConfigError, match="edge_dim must be an integer or None"):
            rv.GraphAttention(edge_dim=RaisingNumber())
        c = rv.AttentionConfig(dropout=np.float32(0.25), use_bias=np.bool_(False), scale=np.float64(0.5), seed=0)
        assert (c.dropout, c.use_bias, c.scale) == (0.25, False, 0.5)
        assert rv.AttentionConfig(dropout=0).dropout == 0.0

    def test_config_forms(self):
        for cfg in (None, {"scale": 0.5}, rv.AttentionConfig(scale=0.5)):
            rv.DotProductAttention(cfg)
        rv.DotProductAttention()
        with pytest.raises(rv.InvalidConfigError):
            rv.DotProductAttention("heads=2")


def test_error_hierarchy():
    assert issubclass(rv.InvalidInputError, rv.RuVectorError) and issubclass(rv.InvalidInputError, ValueError)
    assert issubclass(rv.DimensionMismatchError, rv.InvalidInputError)
    assert issubclass(rv.InvalidConfigError, rv.RuVectorError) and issubclass(rv.InvalidConfigError, ValueError)
    assert issubclass(rv.ComputationError, rv.RuVectorError) and issubclass(rv.ComputationError, RuntimeError)
    e = pickle.loads(pickle.dumps(rv.DimensionMismatchError("m", 3, 4)))
    assert (e.expected, e.actual, str(e)) == (3, 4, "m")


def test_fork_child_can_compute():
    code = """
import os, numpy as np, ruvector as rv
x = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
a = rv.DotProductAttention()
a.compute(x, x, x)  # the parent's pool is running
pid = os.fork()
if pid == 0:
    out = a.compute(x, x, x, need_weights=False)
    os._exit(0 if np.isfinite(out.values).all() else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    out = run_python(code)
    assert out.stdout.strip() == "0", out.stderr


def test_batch_config_validation():
    assert rv.BatchConfig(max_batch_size=np.int64(8), num_threads=np.int32(2)).max_batch_size == 8
    for bad in ({"max_batch_size": 0}, {"max_batch_size": 2.5}, {"num_threads": 0}, {"enable_progress": "x"}):
        with pytest.raises(rv.InvalidConfigError):
            rv.BatchConfig(**bad)

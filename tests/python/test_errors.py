"""Malformed input raises the typed errors of docs/contract.md §6 with messages that say how to fix it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ruvector as rv

X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "bad",
    [None, "abc", b"xy", {"a": 1}, 3 + 4j, np.ones((4, 3), np.complex64), [[1, 2], [3]], [["a", "b"]], object()],
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_non_arrays_raise_invalid_input(bad, position):
    args = [X, X, X]
    args[position] = bad
    with pytest.raises(rv.InvalidInputError) as info:
        rv.DotProductAttention().compute(*args)
    assert ["query", "key", "value"][position] in str(info.value)


@pytest.mark.parametrize("shape", [(), (3,), (2, 4, 3, 1), (1, 1, 1)])
def test_wrong_rank(shape):
    with pytest.raises(rv.DimensionMismatchError, match="2-D"):
        rv.DotProductAttention().compute(np.ones(shape, np.float32), X, X)


def test_dimension_mismatch_messages():
    attn = rv.DotProductAttention()
    with pytest.raises(rv.DimensionMismatchError, match="key has 4 columns, query has 3") as info:
        attn.compute(X, np.ones((5, 4), np.float32), np.ones((5, 2), np.float32))
    assert (info.value.expected, info.value.actual) == (3, 4)
    with pytest.raises(rv.DimensionMismatchError, match="value has 2 rows, key has 4"):
        attn.compute(X, X, np.ones((2, 3), np.float32))


def test_mask_errors():
    attn = rv.DotProductAttention()
    with pytest.raises(rv.DimensionMismatchError, match="mask"):
        attn.compute(X, X, X, mask=np.ones((4, 5), bool))
    with pytest.raises(rv.DimensionMismatchError, match="mask"):
        attn.compute(X, X, X, mask=np.ones((4,), bool))
    with pytest.raises(rv.InvalidInputError, match="astype"):
        attn.compute(X, X, X, mask=np.ones((4, 4), np.int64))
    with pytest.raises(rv.InvalidInputError):
        attn.compute(X, X, X, mask="upper")


def test_huge_weights_rejected_before_allocating():
    q = np.ones((400_000, 1), np.float32)
    with pytest.raises((rv.InvalidInputError, MemoryError), match="need_weights=False"):
        rv.DotProductAttention().compute(q, q, q)


def test_keyword_types():
    with pytest.raises(TypeError):
        rv.DotProductAttention().compute(X, X, X, causal="yes")
    with pytest.raises(TypeError):
        rv.DotProductAttention().compute(X, X, X, 1)


def test_error_does_not_corrupt_later_calls():
    attn = rv.DotProductAttention()
    good = attn.compute(X, X, X).values.copy()
    for bad in (None, np.ones((2, 2)), "x"):
        with pytest.raises(rv.InvalidInputError):
            attn.compute(X, bad, X)
    np.testing.assert_array_equal(attn.compute(X, X, X).values, good)


@settings(max_examples=60, deadline=None)
@given(
    lq=st.integers(0, 6),
    lk=st.integers(0, 6),
    d=st.integers(0, 5),
    dk=st.integers(0, 5),
    dv=st.integers(0, 4),
    vrows=st.integers(0, 6),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.float16, np.bool_]),
    fill=st.sampled_from([0.5, np.nan, np.inf, -np.inf, 1e30]),
)
def test_arbitrary_shapes_never_crash(lq, lk, d, dk, dv, vrows, dtype, fill):
    rng = np.random.default_rng(lq * 1000 + lk * 100 + d)
    q = rng.standard_normal((lq, d)).astype(dtype)
    k = rng.standard_normal((lk, dk)).astype(dtype)
    v = rng.standard_normal((vrows, dv)).astype(dtype)
    if q.size and np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):  # 1e30 becomes inf in float16, as intended
            q.flat[0] = fill
    try:
        out = rv.DotProductAttention().compute(q, k, v)
    except rv.DimensionMismatchError:
        assert dk != d or vrows != lk
        return
    assert dk == d and vrows == lk
    assert out.values.shape == (lq, dv) and out.weights.shape == (lq, lk)


def test_inputs_too_large_to_copy_name_the_argument_and_the_size():
    """Broadcast and zero-stride views of huge shapes: the copy NumPy cannot make is reported
    as InvalidInputError naming the argument, its shape and the bytes needed (never a bare
    pybind11 failure or a crash)."""
    huge_key = np.broadcast_to(np.float64(0.5), (2**40, 3))  # not float32: must be copied
    with pytest.raises(rv.InvalidInputError, match=r"key of shape \(1099511627776, 3\).*MB"):
        rv.DotProductAttention().compute(X, huge_key, X, need_weights=False)
    huge_mask = np.broadcast_to(np.float64(0.0), (2**40, 4))
    with pytest.raises(rv.InvalidInputError, match="mask"):
        rv.DotProductAttention().compute(X, X, X, mask=huge_mask)
    edges = np.lib.stride_tricks.as_strided(np.zeros(2, np.int32), (2**40, 2), (0, 4))
    with pytest.raises(rv.InvalidInputError, match=r"edges of shape \(1099511627776, 2\).*MB"):
        rv.GraphStructure(edges, 5)
    with pytest.raises(rv.InvalidInputError, match="edge_index"):
        rv.GraphStructure.from_edge_index(np.lib.stride_tricks.as_strided(np.zeros(2, np.int32), (2, 2**40), (4, 0)), 5)


@pytest.mark.parametrize(
    ("config", "embed_dim"), [({"num_heads": 1, "head_dim": 1}, 2**62), ({"num_heads": 2**20, "head_dim": 2**20}, None)]
)
def test_huge_layer_widths_are_refused_with_their_size(config, embed_dim):
    with pytest.raises(rv.InvalidConfigError, match=r"embed_dim \d+ is too large"):
        rv.MultiHeadAttention(config, embed_dim=embed_dim)


@pytest.mark.parametrize(
    ("cls", "state", "why"),
    [
        ("DotProductAttention", ("x",), "Unable to cast"),
        ("DotProductAttention", (), "0 entries, expected 1"),
        ("TemporalAttention", (), "0 entries"),
        ("TemporalAttention", (None, "yes", 1.0, None, None), "cast"),
        ("HierarchicalAttention", (1, 2), "2 entries"),
        ("GraphAttention", (None, {}, None), "KeyError"),
        ("DotProductAttention", (None,), "corrupt"),
        ("MultiHeadAttention", (None, 4, 4, 4, None), "corrupt"),
        ("GraphStructure", (None, 3, None), "edges must be an integer array"),
        ("AttentionOutput", ("x", None, {}), "values must be a numpy array"),
        ("AttentionOutput", (np.ones(2), None), "2 entries"),
        # states of the wrong type (were pybind11 TypeErrors)
        ("DotProductAttention", None, "NoneType, expected a tuple of 1"),
        ("GraphStructure", {"a": 1}, "dict, expected a tuple of 3"),
        ("MultiHeadAttention", 5, "int, expected a tuple"),
        ("AttentionOutput", [np.ones(2), None, {}], "list, expected a tuple"),
        ("AttentionConfig", ("x", 1), "tuple, expected a dict"),
        ("AttentionConfig", None, "expected a dict"),
        ("AttentionConfig", {"num_heads": "x"}, "num_heads must be an integer"),
        ("AttentionConfig", {"bogus": 1}, "unknown config key"),
    ],
)
def test_corrupt_pickle_states_raise_invalid_input(cls, state, why):
    obj_type = getattr(rv, cls)
    blank = obj_type.__new__(obj_type)  # what pickle does before __setstate__
    with pytest.raises(rv.InvalidInputError, match=why):
        blank.__setstate__(state)


def test_attention_output_checks_its_fields():
    with pytest.raises(rv.InvalidInputError, match="values must be a numpy array"):
        rv.AttentionOutput("x", 5, [])
    with pytest.raises(rv.InvalidInputError, match="weights must be a numpy array or None"):
        rv.AttentionOutput(np.ones(2), 5)
    with pytest.raises(rv.InvalidInputError, match="metadata must be a dict or None"):
        rv.AttentionOutput(np.ones(2), None, [])
    out = rv.AttentionOutput(np.ones(2, np.float32), None, {"attention_type": "mine"})
    assert out.weights is None and out.metadata["attention_type"] == "mine"
    # metadata always holds "attention_type" (docs/contract.md §3): "custom" when a hand-made one has none;
    # the caller's dict is copied, not changed
    assert rv.AttentionOutput(np.ones(2, np.float32)).metadata == {"attention_type": "custom"}
    given = {"note": 1}
    assert rv.AttentionOutput(np.ones(2, np.float32), None, given).metadata == {"note": 1, "attention_type": "custom"}
    assert given == {"note": 1}


def test_batch_keyword_errors_name_the_public_method_without_dumping_arrays():
    stacked = np.ones((2, 3, 4), np.float32)
    attn = rv.DotProductAttention()
    with pytest.raises(TypeError, match=r"compute_batch: unexpected argument.*foo=int.*causal: bool") as info:
        attn.compute_batch(stacked, stacked, stacked, foo=1)
    assert "array(" not in str(info.value) and "_prepare" not in str(info.value)
    with pytest.raises(TypeError, match="causal=str"):
        attn.compute_batch(list(stacked), list(stacked), list(stacked), causal="yes")


# ---------------------------------------------------------------------------------------------
# Issue 19 item 6: exceptions keep their type; sizes and odd objects give typed errors.


@pytest.mark.parametrize("n", [2**63, 2**64, -(2**63) - 1])
def test_huge_thread_counts_are_invalid_config(n):
    before = rv.get_num_threads()
    with pytest.raises(rv.InvalidConfigError, match="num_threads"):
        rv.BatchConfig(num_threads=n)
    with pytest.raises(rv.InvalidConfigError, match="num_threads"):
        rv.set_num_threads(n)
    assert rv.get_num_threads() == before


@pytest.mark.parametrize("n", [2**63, 2**64])
def test_huge_embed_dim_is_invalid_config(n):
    with pytest.raises(rv.InvalidConfigError, match="embed_dim"):
        rv.MultiHeadAttention(rv.AttentionConfig(num_heads=1, head_dim=4), embed_dim=n)


def test_graph_attention_over_zero_features_is_refused():
    with pytest.raises(rv.InvalidConfigError, match="in_features"):
        rv.GraphAttention(rv.AttentionConfig(num_heads=1, head_dim=4), in_features=0)


class _ItemsRaise:
    def items(self):
        raise RuntimeError("broken mapping")


class _ItemsOdd:
    def __init__(self, items):
        self._items = items

    def items(self):
        return self._items


ODD_MAPPINGS = [
    {1: np.zeros(3)},
    _ItemsRaise(),
    _ItemsOdd([1, 2]),
    _ItemsOdd([("a",)]),
    _ItemsOdd([("a", 1, 2)]),
    _ItemsOdd(5),
    [("in_proj_weight", np.zeros((3, 3)))],
    42,
]


def _layers():
    cfg = rv.AttentionConfig(num_heads=1, head_dim=4)
    return [rv.MultiHeadAttention(cfg, embed_dim=4), rv.GraphAttention(cfg, in_features=3)]


@pytest.mark.parametrize("weights", ODD_MAPPINGS, ids=lambda w: type(w).__name__)
def test_set_weights_with_odd_mappings_is_invalid_input(weights):
    for layer in _layers():
        with pytest.raises(rv.InvalidInputError):
            layer.set_weights(weights)


class _Interrupting:
    """An array-like whose conversion is interrupted (Ctrl-C while NumPy reads it)."""

    def __init__(self, error):
        self.error = error

    def __array__(self, dtype=None, copy=None):
        raise self.error

    def __index__(self):
        raise self.error

    def items(self):
        raise self.error


@pytest.mark.parametrize("error", [KeyboardInterrupt, MemoryError, SystemExit])
def test_base_exceptions_pass_through_conversions_unchanged(error):
    bad = _Interrupting(error())
    cfg = rv.AttentionConfig(num_heads=1, head_dim=4)
    for call in [
        lambda: rv.DotProductAttention().compute(bad, X, X),
        lambda: rv.MultiHeadAttention(cfg, embed_dim=4).set_weights(bad),
        lambda: rv.GraphAttention(cfg, in_features=3).set_weights(bad),
        lambda: rv.AttentionConfig(num_heads=bad, head_dim=4),
        lambda: rv.set_num_threads(bad),
        lambda: rv.BatchConfig(num_threads=bad),
        lambda: rv.GraphStructure(np.array([[0, 1]]), bad),
        lambda: rv.GraphStructure(bad, 3),
        lambda: rv.GraphAttention(cfg, in_features=bad),
        lambda: rv.GraphStructure(np.array([[0, 1]]), 3, edge_features=[bad]),
    ]:
        with pytest.raises(error):
            call()


def test_atexit_handler_calling_ruvector_on_a_thread_does_not_hang():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import atexit, threading
        import numpy as np

        def late():
            import ruvector as rv
            x = np.ones((64, 8), np.float32)
            out = []
            t = threading.Thread(target=lambda: out.append(rv.DotProductAttention().compute(x, x, x)))
            t.start()
            t.join(10)
            print("joined", not t.is_alive(), len(out))

        atexit.register(late)  # registered before the import: runs after ruvector's own hook
        import ruvector as rv
        x = np.ones((8, 4), np.float32)
        rv.DotProductAttention().compute(x, x, x)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["joined", "True", "1"]

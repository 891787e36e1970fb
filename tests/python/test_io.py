"""Weights and layers in and out (docs/contract.md §9): ``set_weights(..., prefix=)`` on a whole
model's state_dict, and ``layer.save(path)`` / ``ruvector.load(path)`` on safetensors files:
equal layers back (bit-for-bit outputs), no pickle, every malformed file refused with
InvalidInputError."""

from __future__ import annotations

import json
import pathlib
import pickle
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from conftest import randn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ruvector as rv
from ruvector import InvalidInputError

safetensors = pytest.importorskip("safetensors")
st_numpy = pytest.importorskip("safetensors.numpy")


# ---------------------------------------------------------------- layers of every class


def graph(rng: np.random.Generator, n: int, e: int, edge_dim: int | None = None) -> rv.GraphStructure:
    edge_index = rng.integers(0, n, size=(2, e))
    features = randn(rng, e, edge_dim) if edge_dim else None
    return rv.GraphStructure.from_edge_index(edge_index, num_nodes=n, edge_features=features)


# name → (a layer made from rng, a call of it on random data made from rng)
Case = tuple[Callable[[], Any], Callable[[Any, np.random.Generator], rv.AttentionOutput]]


def _qkv(layer: Any, rng: np.random.Generator, lq: int = 5, lk: int = 7, d: int = 16, dk: int = 16, dv: int = 16):
    return layer.compute(randn(rng, lq, d), randn(rng, lk, dk), randn(rng, lk, dv), causal=False)


CASES: dict[str, Case] = {
    "dot_product": (
        lambda: rv.DotProductAttention({"num_heads": 1, "head_dim": 16, "scale": 0.3, "seed": 7}),
        lambda layer, rng: _qkv(layer, rng),
    ),
    "multi_head": (
        lambda: rv.MultiHeadAttention({"num_heads": 4, "head_dim": 8, "seed": 3}),
        lambda layer, rng: _qkv(layer, rng, d=32, dk=32, dv=32),
    ),
    "multi_head_kdim_vdim_no_bias": (
        lambda: rv.MultiHeadAttention({"num_heads": 2, "head_dim": 8, "use_bias": False}, kdim=12, vdim=20),
        lambda layer, rng: _qkv(layer, rng, d=16, dk=12, dv=20),
    ),
    "multi_head_bias_kv_zero_attn": (
        lambda: rv.MultiHeadAttention(
            {"num_heads": 2, "head_dim": 4}, kdim=6, vdim=5, add_bias_kv=True, add_zero_attn=True
        ),
        lambda layer, rng: _qkv(layer, rng, d=8, dk=6, dv=5),
    ),
    "gat": (
        lambda: rv.GraphAttention({"num_heads": 4, "head_dim": 8, "seed": 11}, in_features=24),
        lambda layer, rng: layer.compute(randn(rng, 30, 24), graph(rng, 30, 90)),
    ),
    "gatv2_edges_mean": (
        lambda: rv.GraphAttention(
            {"num_heads": 3, "head_dim": 5, "use_bias": False},
            in_features=10,
            concat=False,
            negative_slope=0.1,
            edge_dim=4,
            variant="gatv2",
        ),
        lambda layer, rng: layer.compute(randn(rng, 20, 10), graph(rng, 20, 50, edge_dim=4)),
    ),
    "gatv2_pyg_options": (
        lambda: rv.GraphAttention(
            {"num_heads": 2, "head_dim": 4},
            in_features=7,
            edge_dim=3,
            variant="gatv2",
            fill_value="max",
            residual=True,
        ),
        lambda layer, rng: layer.compute(randn(rng, 15, 7), graph(rng, 15, 40, edge_dim=3)),
    ),
    "gat_no_self_loops": (
        lambda: rv.GraphAttention({"num_heads": 2, "head_dim": 6}, in_features=9, add_self_loops=False),
        lambda layer, rng: layer.compute(randn(rng, 15, 9), graph(rng, 15, 60)),
    ),
    "gat_not_initialised": (  # in_features=None: saved as such, without weights
        lambda: rv.GraphAttention({"num_heads": 2, "head_dim": 4, "seed": 5}),
        lambda layer, rng: layer.compute(randn(rng, 12, 7), graph(rng, 12, 30)),
    ),
    "temporal_decay": (
        lambda: rv.TemporalAttention({"num_heads": 1, "head_dim": 8}, decay_rate=0.3, window=4.5),
        lambda layer, rng: layer.compute(randn(rng, 9, 8), np.sort(rng.random(9) * 10)),
    ),
    "temporal_half_life": (
        lambda: rv.TemporalAttention({"num_heads": 1, "head_dim": 8, "scale": 0.5}, causal=False, half_life=2.5),
        lambda layer, rng: layer.compute(randn(rng, 11, 8), rng.random(11) * 10),
    ),
    "hierarchical": (
        lambda: rv.HierarchicalAttention({"num_heads": 1, "head_dim": 6}),
        lambda layer, rng: layer.compute([randn(rng, 5, 6), randn(rng, 3, 6)], np.array([0.3, 0.7])),
    ),
}


def outputs_equal(a: rv.AttentionOutput, b: rv.AttentionOutput) -> None:
    assert a.values.tobytes() == b.values.tobytes()
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None:
        assert a.weights.tobytes() == b.weights.tobytes()


@pytest.mark.parametrize("case", CASES)
def test_every_class_round_trips_bit_for_bit(
    case: str, backend: str, tmp_path: pathlib.Path, rng: np.random.Generator
) -> None:
    make, call = CASES[case]
    layer = make()
    if hasattr(layer, "get_weights") and layer.get_weights():  # trained-looking weights, not the seeded ones
        layer.set_weights({k: randn(rng, *v.shape) for k, v in layer.get_weights().items()})
    path = tmp_path / f"{case}.safetensors"
    layer.save(path)
    loaded = rv.load(path)
    assert type(loaded) is type(layer)
    if type(layer).__repr__ is not object.__repr__:  # the classes with a repr of their settings
        assert repr(loaded) == repr(layer)
    assert loaded.config == layer.config
    for name in type(layer)._options:
        assert getattr(loaded, name) == getattr(layer, name), name
    if hasattr(layer, "get_weights"):
        before, after = layer.get_weights(), loaded.get_weights()
        assert list(after) == list(before)
        for k in before:
            assert after[k].dtype == np.float32 and after[k].tobytes() == before[k].tobytes(), k
    loaded.save(tmp_path / "again.safetensors")  # a loaded layer writes the same contents
    (tensors, metadata), (tensors_again, metadata_again) = (
        parts(p.read_bytes()) for p in (path, tmp_path / "again.safetensors")
    )
    assert metadata_again == metadata
    assert tensors_again.keys() == tensors.keys()
    assert all(tensors_again[k].tobytes() == tensors[k].tobytes() for k in tensors)
    seed = int(rng.integers(2**32))
    # (a lazy GraphAttention fixes its in_features at the first call, the same in both)
    outputs_equal(call(loaded, np.random.default_rng(seed)), call(layer, np.random.default_rng(seed)))


def test_file_layout_is_readable_by_safetensors(tmp_path: pathlib.Path) -> None:
    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 3}, in_features=5, variant="gatv2")
    layer.save(str(tmp_path / "layer.safetensors"))  # str paths as well as PathLike
    with safetensors.safe_open(str(tmp_path / "layer.safetensors"), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open is no Mapping)
    assert metadata["ruvector.class"] == "GraphAttention"
    assert metadata["ruvector.version"] == rv.__version__
    assert json.loads(metadata["ruvector.config"]) == layer.config.to_dict()
    options = json.loads(metadata["ruvector.options"])
    assert options["variant"] == "gatv2" and options["in_features"] == 5
    assert tensors.keys() == layer.get_weights().keys()


def test_subclass_is_saved_as_its_ruvector_class(tmp_path: pathlib.Path) -> None:
    class MyGAT(rv.GraphAttention):
        pass

    MyGAT({"num_heads": 1, "head_dim": 4}, in_features=3).save(tmp_path / "sub.safetensors")
    assert type(rv.load(tmp_path / "sub.safetensors")) is rv.GraphAttention


def test_uninitialised_object_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInputError, match="never initialised"):
        rv.MultiHeadAttention.__new__(rv.MultiHeadAttention).save(tmp_path / "x.safetensors")


# ---------------------------------------------------------------- safetensors is optional


def test_without_safetensors_save_and_load_name_the_extra(tmp_path: pathlib.Path, monkeypatch) -> None:
    layer = rv.DotProductAttention()
    layer.save(tmp_path / "ok.safetensors")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors → ImportError
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r'pip install "ruvector-latent\[io\]"'):
        layer.save(tmp_path / "x.safetensors")
    with pytest.raises(ImportError, match=r'pip install "ruvector-latent\[io\]"'):
        rv.load(tmp_path / "ok.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------- no pickle, no code


def test_load_never_unpickles(tmp_path: pathlib.Path, monkeypatch) -> None:
    layer = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})
    layer.save(tmp_path / "mha.safetensors")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load used pickle")

    for name in ("load", "loads", "Unpickler", "_load", "_loads", "_Unpickler"):
        if hasattr(pickle, name):
            monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)  # nor np.load (allow_pickle)
    loaded = rv.load(tmp_path / "mha.safetensors")
    assert repr(loaded) == repr(layer)


def test_a_pickle_file_is_refused_unopened(tmp_path: pathlib.Path, monkeypatch) -> None:
    """A pickle that would run code when unpickled is only ever read as (not) a safetensors file."""
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(InvalidInputError, match="not a ruvector layer file"):
        rv.load(path)


# ---------------------------------------------------------------- malformed files


@pytest.fixture(scope="module")
def good_file() -> bytes:
    """A valid GAT file (with edge features: five weights of ranks 1 to 3)."""
    import io
    import os
    import tempfile

    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 3, "seed": 1}, in_features=4, edge_dim=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gat.safetensors")
        layer.save(path)
        with open(path, "rb") as f:
            return io.BytesIO(f.read()).getvalue()


def header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def parts(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a file's bytes."""
    header = json.loads(data[8 : header_end(data)])
    return st_numpy.load(data), header["__metadata__"]


def refused(tmp_path: pathlib.Path, data: bytes, match: str = "not a ruvector layer file") -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=match):
        rv.load(path)


def test_good_file_loads(tmp_path: pathlib.Path, good_file: bytes) -> None:
    (tmp_path / "good.safetensors").write_bytes(good_file)
    assert isinstance(rv.load(tmp_path / "good.safetensors"), rv.GraphAttention)


def test_every_truncation_is_refused(tmp_path: pathlib.Path, good_file: bytes) -> None:
    for cut in [*range(0, len(good_file), 7), len(good_file) - 1]:
        refused(tmp_path, good_file[:cut], "not a ruvector layer file")


def test_any_flipped_high_bit_in_the_header_is_refused(tmp_path: pathlib.Path, good_file: bytes) -> None:
    # every header byte is ASCII: with its high bit set it is no longer UTF-8 (or no longer the
    # length in the first 8 bytes)
    for i in range(header_end(good_file)):
        data = bytearray(good_file)
        data[i] ^= 0x80
        refused(tmp_path, bytes(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_any_changed_byte_loads_or_is_refused(
    tmp_path: pathlib.Path, good_file: bytes, position: int, value: int
) -> None:
    """There is no checksum: a changed weight or option value may still be a valid layer; but a
    changed byte never escapes as anything other than InvalidInputError, nor crashes."""
    data = bytearray(good_file)
    data[position % len(data)] = value
    path = tmp_path / "changed.safetensors"
    path.write_bytes(bytes(data))
    try:
        layer = rv.load(path)
    except InvalidInputError:
        return
    assert isinstance(layer, rv.GraphAttention)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a safetensors file at all",
        struct.pack("<Q", 2**63) + b"{}",
        struct.pack("<Q", 0),
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 4) + b"null",
        b"\x93NUMPY\x01\x00" + b"\x00" * 100,
    ],
    ids=["empty", "text", "huge-length", "zero-length", "list-header", "null-header", "npy"],
)
def test_not_safetensors_is_refused(tmp_path: pathlib.Path, data: bytes) -> None:
    refused(tmp_path, data, "not a ruvector layer file")


def test_missing_file_is_an_os_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(OSError):
        rv.load(tmp_path / "absent.safetensors")


def with_metadata(good_file: bytes, **changes: str | None) -> bytes:
    tensors, metadata = parts(good_file)
    for key, value in changes.items():
        key = "ruvector." + key
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    return st_numpy.save(tensors, metadata=metadata)


METADATA_CASES = {
    "no-class": ({"class": None}, "no ruvector metadata"),
    "unknown-class": ({"class": "os.system"}, "unknown class 'os.system'"),
    "class-not-exported": ({"class": "Mechanism"}, "unknown class 'Mechanism'"),
    "other-class": ({"class": "MultiHeadAttention"}, "refused"),  # its options are GAT's
    "newer-format": ({"format": "2"}, "a newer ruvector reads it"),
    "no-format": ({"format": None}, "format is 'missing'"),
    "no-config": ({"config": None}, "it has no ruvector.config"),
    "no-options": ({"options": None}, "it has no ruvector.options"),
    "long-class": ({"class": "x" * 10**6}, r"unknown class 'x{80}\.\.\.':"),
    "config-not-json": ({"config": "{num_heads: 2"}, "ruvector.config is not valid JSON"),
    "config-not-object": ({"config": "[2, 3]"}, "must be a JSON object"),
    "config-unknown-key": ({"config": '{"num_heads": 2, "head_dim": 3, "evil": 1}'}, "unknown config key 'evil'"),
    "config-wrong-type": ({"config": '{"num_heads": "two", "head_dim": 3}'}, "num_heads"),
    "config-deep": ({"config": "[" * 100000 + "]" * 100000}, "not valid JSON"),
    "options-not-json": ({"options": "in_features=4"}, "ruvector.options is not valid JSON"),
    "options-not-object": ({"options": "4"}, "must be a JSON object"),
    "options-unknown": ({"options": '{"in_features": 4, "edge_dim": 2, "__class__": 1}'}, "unknown GraphAttention"),
    "options-wrong-type": ({"options": '{"in_features": "4", "edge_dim": 2}'}, "refused"),
    "options-bad-value": ({"options": '{"in_features": 4, "edge_dim": 2, "variant": "gat3"}'}, "refused"),
    "options-other-shapes": ({"options": '{"in_features": 5, "edge_dim": 2}'}, "'lin.weight' has shape"),
    "options-no-edges": ({"options": '{"in_features": 4}'}, "unknown 'att_edge', 'lin_edge.weight'"),
    "options-lazy": ({"options": '{"in_features": null, "edge_dim": 2}'}, "the layer has no weights"),
}


@pytest.mark.parametrize("case", METADATA_CASES)
def test_wrong_metadata_is_refused(tmp_path: pathlib.Path, good_file: bytes, case: str) -> None:
    changes, match = METADATA_CASES[case]
    refused(tmp_path, with_metadata(good_file, **changes), match)


def test_no_metadata_is_refused(tmp_path: pathlib.Path, good_file: bytes) -> None:
    tensors, _ = parts(good_file)
    refused(tmp_path, st_numpy.save(tensors), "no ruvector metadata")
    refused(tmp_path, st_numpy.save(tensors, metadata={"format": "pt"}), "no ruvector metadata")


def with_tensors(good_file: bytes, change: Callable[[dict[str, np.ndarray]], None]) -> bytes:
    tensors, metadata = parts(good_file)
    change(tensors)
    return st_numpy.save(tensors, metadata=metadata)


TENSOR_CASES: dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]] = {
    "extra": (lambda t: t.update({"lin_src.weight": np.zeros((6, 4), np.float32)}), "unknown 'lin_src.weight'"),
    "missing": (lambda t: t.pop("bias"), "missing 'bias'"),
    "renamed": (lambda t: t.update({"conv1.bias": t.pop("bias")}), "unknown 'conv1.bias'; missing 'bias'"),
    "shape": (lambda t: t.update({"lin.weight": np.zeros((6, 5), np.float32)}), r"'lin.weight' has shape \[6, 5\]"),
    "rank": (lambda t: t.update({"att_src": np.zeros((2, 3), np.float32)}), r"'att_src' has shape \[2, 3\]"),
    "float64": (lambda t: t.update({"bias": t["bias"].astype(np.float64)}), "'bias' is F64"),
    "float16": (lambda t: t.update({"bias": t["bias"].astype(np.float16)}), "'bias' is F16"),
    "int32": (lambda t: t.update({"bias": t["bias"].astype(np.int32)}), "'bias' is I32"),
}


@pytest.mark.parametrize("case", TENSOR_CASES)
def test_wrong_tensors_are_refused(tmp_path: pathlib.Path, good_file: bytes, case: str) -> None:
    change, match = TENSOR_CASES[case]
    refused(tmp_path, with_tensors(good_file, change), match)


def test_weights_in_a_class_without_weights_are_refused(tmp_path: pathlib.Path) -> None:
    rv.TemporalAttention(decay_rate=0.5).save(tmp_path / "t.safetensors")
    tensors, metadata = parts((tmp_path / "t.safetensors").read_bytes())
    assert tensors == {}
    tensors["payload"] = np.zeros(3, np.float32)
    refused(tmp_path, st_numpy.save(tensors, metadata=metadata), "unknown 'payload'")


# ---------------------------------------------------------------- set_weights(prefix=)


class FrozenMapping(Mapping[str, Any]):
    """A read-only Mapping that is no dict (any Mapping is accepted)."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("embed_dim", "heads", "kdim", "vdim", "bias"), [(16, 2, None, None, True), (24, 4, 10, 14, False)]
)
def test_mha_layers_load_from_a_models_state_dict(
    torch: Any, backend: str, rng: np.random.Generator, embed_dim: int, heads: int, kdim: Any, vdim: Any, bias: bool
) -> None:
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.attn = torch.nn.MultiheadAttention(embed_dim, heads, batch_first=True, bias=bias)
            self.cross = torch.nn.MultiheadAttention(
                embed_dim, heads, kdim=kdim, vdim=vdim, batch_first=True, bias=bias
            )
            self.head = torch.nn.Linear(embed_dim, 3)

    torch.manual_seed(int(rng.integers(1000)))
    model = Model().eval()
    state = model.state_dict()
    config = {"num_heads": heads, "head_dim": embed_dim // heads, "use_bias": bias}
    for prefix, module, (dk, dv) in (
        ("encoder.attn.", model.encoder.attn, (embed_dim, embed_dim)),
        ("cross.", model.cross, (kdim or embed_dim, vdim or embed_dim)),
    ):
        layer = rv.MultiHeadAttention(
            config,
            embed_dim=embed_dim,
            kdim=kdim if module is model.cross else None,
            vdim=vdim if module is model.cross else None,
        )
        layer.set_weights(state, prefix=prefix)
        q, k, v = randn(rng, 6, embed_dim), randn(rng, 9, dk), randn(rng, 9, dv)
        with torch.no_grad():
            expected, _ = module(*(torch.from_numpy(a)[None] for a in (q, k, v)))
        np.testing.assert_allclose(layer.compute(q, k, v).values, expected[0].numpy(), rtol=1e-4, atol=1e-5)
        # the same from the live parameters (requires_grad tensors) and from any Mapping
        again = rv.MultiHeadAttention(config, embed_dim=embed_dim, kdim=layer.kdim, vdim=layer.vdim)
        again.set_weights(FrozenMapping(dict(model.named_parameters())), prefix=prefix)
        outputs_equal(again.compute(q, k, v), layer.compute(q, k, v))


@pytest.mark.parametrize("edge_dim", [None, 3])
def test_gat_layers_load_from_a_pyg_models_state_dict(
    torch: Any, backend: str, rng: np.random.Generator, edge_dim: int | None
) -> None:
    pyg = pytest.importorskip("torch_geometric.nn")

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = pyg.GATConv(12, 5, heads=3, edge_dim=edge_dim)
            self.conv2 = pyg.GATv2Conv(15, 4, heads=2, concat=False, edge_dim=edge_dim)

    torch.manual_seed(int(rng.integers(1000)))
    model = Model().eval()
    state = {k: v.numpy() for k, v in model.state_dict().items()}  # ndarrays as well as tensors
    conv1 = rv.GraphAttention({"num_heads": 3, "head_dim": 5}, in_features=12, edge_dim=edge_dim)
    conv1.set_weights(model.state_dict(), prefix="conv1.")
    conv2 = rv.GraphAttention(
        {"num_heads": 2, "head_dim": 4}, in_features=15, concat=False, edge_dim=edge_dim, variant="gatv2"
    )
    conv2.set_weights(state, prefix="conv2.")
    n, e = 25, 80
    x = randn(rng, n, 12)
    edge_index = rng.integers(0, n, size=(2, e))
    features = randn(rng, e, edge_dim) if edge_dim else None
    g = rv.GraphStructure.from_edge_index(edge_index, num_nodes=n, edge_features=features)
    with torch.no_grad():
        kw = {"edge_attr": torch.from_numpy(features)} if edge_dim else {}
        hidden = model.conv1(torch.from_numpy(x), torch.from_numpy(edge_index), **kw)
        expected = model.conv2(hidden, torch.from_numpy(edge_index), **kw).numpy()
    got_hidden = conv1.compute(x, g).values
    np.testing.assert_allclose(got_hidden, hidden.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conv2.compute(got_hidden, g).values, expected, rtol=1e-4, atol=1e-4)


def mha_state(rng: np.random.Generator, prefix: str = "attn.") -> dict[str, np.ndarray]:
    layer = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})
    return {prefix + k: randn(rng, *v.shape) for k, v in layer.get_weights().items()} | {
        "other.weight": randn(rng, 3, 3)
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda sd: sd.pop("attn.out_proj.bias"), "out_proj.bias"),  # missing
        (lambda sd: sd.update({"attn.extra": np.zeros(3, np.float32)}), "extra"),  # unknown
        (lambda sd: sd.update({"attn.in_proj_bias": np.zeros(5, np.float32)}), "in_proj_bias"),  # shape
        (lambda sd: sd.update({"attn.out_proj.weight": "text"}), "out_proj.weight"),  # not an array
    ],
    ids=["missing", "unknown", "shape", "not-an-array"],
)
def test_prefix_failure_changes_nothing(rng: np.random.Generator, change: Callable[[dict], Any], match: str) -> None:
    layer = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})
    layer.set_weights(mha_state(rng), prefix="attn.")
    before = layer.get_weights()
    bad = mha_state(rng)
    change(bad)
    with pytest.raises(InvalidInputError, match=match):
        layer.set_weights(bad, prefix="attn.")
    after = layer.get_weights()
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)


def test_gat_prefix_failure_changes_nothing(rng: np.random.Generator) -> None:
    layer = rv.GraphAttention({"num_heads": 2, "head_dim": 3}, in_features=4)
    before = layer.get_weights()
    state = {"conv1." + k: randn(rng, *v.shape) for k, v in before.items()}
    state["conv1.lin.weight"] = randn(rng, 6, 5)
    with pytest.raises(InvalidInputError, match=r"lin\.weight"):
        layer.set_weights(state, prefix="conv1.")
    assert all(layer.get_weights()[k].tobytes() == before[k].tobytes() for k in before)


def test_prefix_matching_nothing_is_refused(rng: np.random.Generator) -> None:
    layer = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})
    with pytest.raises(InvalidInputError, match=r"no weight name starts with prefix 'atn\.'.*'attn\.', 'other\.'"):
        layer.set_weights(mha_state(rng), prefix="atn.")
    with pytest.raises(InvalidInputError, match="prefix must be a str"):
        layer.set_weights(mha_state(rng), prefix=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="mapping"):
        layer.set_weights([("attn.in_proj_weight", 1)], prefix="attn.")  # type: ignore[arg-type]


def test_prefix_is_stripped_once_and_only_at_the_start(rng: np.random.Generator) -> None:
    layer = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 4})
    nested = mha_state(rng, prefix="a.a.")
    layer.set_weights(nested, prefix="a.a.")
    assert layer.get_weights()["in_proj_bias"].tobytes() == nested["a.a.in_proj_bias"].tobytes()
    with pytest.raises(InvalidInputError, match=r"unknown weight .a\.in_proj_"):  # "a." leaves "a.in_proj_...": unknown
        layer.set_weights(nested, prefix="a.")


def test_files_load_into_torch_and_pyg_modules(torch: Any, tmp_path: pathlib.Path, rng: np.random.Generator) -> None:
    """The tensors carry torch's / PyG's names and shapes: safetensors.torch reads a saved layer
    straight into the module (load_state_dict, strict), which then gives the layer's outputs."""
    pyg = pytest.importorskip("torch_geometric.nn")
    st_torch = pytest.importorskip("safetensors.torch")
    mha = rv.MultiHeadAttention({"num_heads": 2, "head_dim": 8}, kdim=6, vdim=10)
    mha.set_weights({k: randn(rng, *v.shape) for k, v in mha.get_weights().items()})
    mha.save(tmp_path / "mha.safetensors")
    module = torch.nn.MultiheadAttention(16, 2, kdim=6, vdim=10, batch_first=True).eval()
    module.load_state_dict(st_torch.load_file(tmp_path / "mha.safetensors"), strict=True)
    q, k, v = randn(rng, 4, 16), randn(rng, 5, 6), randn(rng, 5, 10)
    with torch.no_grad():
        expected, _ = module(*(torch.from_numpy(a)[None] for a in (q, k, v)))
    np.testing.assert_allclose(mha.compute(q, k, v).values, expected[0].numpy(), rtol=1e-4, atol=1e-5)

    gat = rv.GraphAttention({"num_heads": 2, "head_dim": 3}, in_features=5, variant="gatv2")
    gat.save(tmp_path / "gat.safetensors")
    conv = pyg.GATv2Conv(5, 3, heads=2).eval()
    conv.load_state_dict(st_torch.load_file(tmp_path / "gat.safetensors"), strict=True)
    x, edge_index = randn(rng, 10, 5), rng.integers(0, 10, size=(2, 30))
    with torch.no_grad():
        expected = conv(torch.from_numpy(x), torch.from_numpy(edge_index)).numpy()
    np.testing.assert_allclose(gat.compute(x, edge_index.T).values, expected, rtol=1e-4, atol=1e-5)

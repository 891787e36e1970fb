"""``ruvector.load(path)``: the layer in a file that ``layer.save(path)`` wrote (docs/contract.md
§9; the layout is in ruvector/_layer_file.py).

Loading runs no code from the file: the class comes from a fixed table, the options must be
names that class lists, the JSON values are checked by its constructor, and the tensors must be
float32 with exactly the names and shapes the layer has. Anything else raises InvalidInputError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeAlias

from ._base import Mechanism
from ._errors import InvalidInputError, RuVectorError
from ._graph import GraphAttention
from ._hierarchical import HierarchicalAttention
from ._layer_file import FORMAT, safetensors_modules
from ._mechanisms import DotProductAttention
from ._multi_head import MultiHeadAttention
from ._temporal import TemporalAttention

Layer: TypeAlias = DotProductAttention | MultiHeadAttention | GraphAttention | TemporalAttention | HierarchicalAttention

# The only classes a file may name: load() never looks a name up anywhere else.
CLASSES: dict[str, type[Mechanism]] = {
    cls.__name__: cls
    for cls in (DotProductAttention, MultiHeadAttention, GraphAttention, TemporalAttention, HierarchicalAttention)
}


def _tuples(value: Any) -> Any:
    """JSON arrays back as the tuples the options were (e.g. a pair of in_features)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _clip(text: str, limit: int = 80) -> str:
    """A value from the file, as an error message quotes it (a hostile file's may be long)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_object(metadata: Mapping[str, str], key: str) -> dict[str, Any]:
    if key not in metadata:
        raise InvalidInputError(f"it has no {key}")
    try:
        value = json.loads(metadata[key])
    except (ValueError, RecursionError) as e:
        raise InvalidInputError(f"its {key} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"its {key} must be a JSON object, got {type(value).__name__}")
    return {k: _tuples(v) for k, v in value.items()}


def _layer(metadata: Mapping[str, str] | None) -> Layer:
    """The layer the metadata describes, with its initial weights."""
    if not metadata or "ruvector.class" not in metadata:
        raise InvalidInputError("it has no ruvector metadata (it was not written by save())")
    if metadata.get("ruvector.format") != FORMAT:
        raise InvalidInputError(
            f"its ruvector.format is {_clip(metadata.get('ruvector.format', 'missing'))}, this ruvector reads "
            f"{FORMAT!r} (written by ruvector {_clip(metadata.get('ruvector.version', '?'))}: a newer ruvector "
            "reads it)"
        )
    name = metadata["ruvector.class"]
    if name not in CLASSES:
        raise InvalidInputError(f"unknown class {_clip(name)}: a file holds one of {', '.join(CLASSES)}")
    cls: Any = CLASSES[name]
    config = _json_object(metadata, "ruvector.config")
    options = _json_object(metadata, "ruvector.options")
    unknown = sorted(set(options) - set(cls._options))
    if unknown:
        raise InvalidInputError(
            f"unknown {name} option(s) {', '.join(map(_clip, unknown))}; it takes "
            f"{', '.join(cls._options) or 'none'} (written by ruvector {_clip(metadata.get('ruvector.version', '?'))})"
        )
    try:
        layer: Layer = cls(config, **options)
    except (RuVectorError, TypeError, ValueError, OverflowError) as e:
        raise InvalidInputError(f"its {name} arguments are refused: {e}") from None
    return layer


def _shape(shape: Any) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _read(handle: Any) -> Layer:
    """The layer in an open safetensors file (safe_open), checked against its metadata."""
    layer = _layer(handle.metadata())
    expected = {k: v.shape for k, v in layer.get_weights().items()} if hasattr(layer, "get_weights") else {}
    names = set(handle.keys())
    if names != set(expected):
        unknown, missing = sorted(names - set(expected)), sorted(set(expected) - names)
        raise InvalidInputError(
            f"its tensors do not match the {type(layer).__name__} it describes: "
            + "; ".join(
                part
                for part in (
                    f"unknown {', '.join(map(repr, unknown))}" if unknown else "",
                    f"missing {', '.join(map(repr, missing))}" if missing else "",
                )
                if part
            )
            + f" (the layer has {', '.join(map(repr, expected)) or 'no weights'})"
        )
    for weight, shape in expected.items():
        tensor = handle.get_slice(weight)
        if tensor.get_dtype() != "F32":
            raise InvalidInputError(f"its {weight!r} is {tensor.get_dtype()}, ruvector writes float32 (F32)")
        if tuple(tensor.get_shape()) != tuple(shape):
            raise InvalidInputError(
                f"its {weight!r} has shape {_shape(tensor.get_shape())}, the layer needs {_shape(shape)}"
            )
    if expected:
        layer.set_weights({weight: handle.get_tensor(weight) for weight in expected})  # type: ignore[union-attr]
    return layer


def load(path: str | os.PathLike[str]) -> Layer:
    """The layer saved in the safetensors file ``path`` by ``save()``: the same class, options
    and weights, so the same outputs bit for bit. Runs no code from the file (no pickle, no
    eval). A file that is not one (not safetensors, truncated, no ruvector metadata, an
    unknown class or option, tensors of other names, shapes or dtypes) raises
    InvalidInputError. Needs the ``safetensors`` package (``ruvector-latent[io]``)."""
    safetensors, _ = safetensors_modules()
    where = os.fspath(path)
    try:
        with safetensors.safe_open(where, framework="numpy") as handle:
            return _read(handle)
    except InvalidInputError as e:
        raise InvalidInputError(f"{where!s} is not a ruvector layer file: {e}") from None
    except (safetensors.SafetensorError, ValueError, TypeError, KeyError, OverflowError, UnicodeError) as e:
        raise InvalidInputError(f"{where!s} is not a ruvector layer file (safetensors): {e}") from None


__all__ = ["CLASSES", "Layer", "load"]

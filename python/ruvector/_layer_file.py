"""The layer file (docs/contract.md §9): one layer per safetensors file, without pickle, written
by ``layer.save(path)`` here and read by ``ruvector.load(path)`` (ruvector/_io.py).

A file holds the layer's weights (float32, under the torch/PyG names ``get_weights()`` gives;
none for the classes without weights) and, in the file's metadata (str → str):

``ruvector.format``   ``"1"``, the layout described here
``ruvector.class``    the class: one of the five attention classes
``ruvector.version``  the ruvector version that wrote the file
``ruvector.config``   the AttentionConfig as JSON (``AttentionConfig.to_dict()``)
``ruvector.options``  the constructor's keyword options as JSON: those of the class's
                      ``_options`` (each also a read-only property of the same name)

Loading runs no code from the file: the class comes from a fixed table, the options must be
names that class lists, the JSON values are checked by its constructor, and the tensors must be
float32 with exactly the names and shapes the layer has. Anything else raises InvalidInputError.
"""

from __future__ import annotations

import json
import os
import types
from typing import Any

from ._errors import InvalidInputError
from ._version import __version__

FORMAT = "1"
INSTALL = 'pip install "ruvector-latent[io]"'
# An option that is not written while the one it derives from is set, because the constructor
# refuses both: TemporalAttention's decay_rate (then ln 2 / half_life).
DERIVED = {"decay_rate": "half_life"}


def safetensors_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """The safetensors package and its NumPy module, or ImportError naming the extra."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as e:
        raise ImportError(f"save() and ruvector.load() need the safetensors package: {INSTALL}") from e
    return safetensors, safetensors.numpy


def saved_class(layer: Any) -> type:
    """The attention class a layer is saved as: the class that holds its native class (a
    subclass of an attention class is saved as that class)."""
    for cls in type(layer).__mro__:
        if "_native_class" in vars(cls):
            return cls
    raise InvalidInputError(f"save() writes ruvector's attention classes, not a {type(layer).__name__}")


def options(layer: Any, cls: type) -> dict[str, Any]:
    """The constructor's keyword options of ``layer``, read from its properties."""
    values = {name: getattr(layer, name) for name in getattr(cls, "_options", ()) if hasattr(cls, name)}
    for name, source in DERIVED.items():
        if values.get(source) is not None:
            values.pop(name, None)
    return values


def save(layer: Any, path: str | os.PathLike[str]) -> None:
    """Writes ``layer`` to the safetensors file ``path`` (the module's docstring gives its layout)."""
    _, st_numpy = safetensors_modules()
    cls = saved_class(layer)
    weights = layer.get_weights() if hasattr(cls, "get_weights") else {}
    metadata = {
        "ruvector.format": FORMAT,
        "ruvector.class": cls.__name__,
        "ruvector.version": __version__,
        "ruvector.config": json.dumps(layer.config.to_dict()),
        "ruvector.options": json.dumps(options(layer, cls)),
    }
    data: bytes = st_numpy.save(weights, metadata=metadata)
    with open(path, "wb") as f:
        f.write(data)


__all__ = ["DERIVED", "FORMAT", "INSTALL", "safetensors_modules", "save"]

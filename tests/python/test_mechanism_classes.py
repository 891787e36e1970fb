"""The public mechanism classes hold their native object (ruvector/_base.py): what they expose,
an object made without __init__, subclasses, copies, and the package's import graph."""

from __future__ import annotations

import ast
import copy
import inspect
import os
import pickle
import subprocess
import sys
import textwrap
import typing

import numpy as np
import pytest

import ruvector as rv
from ruvector import _native

CLASSES = {
    "DotProductAttention": ("x, x, x", ("queries", "keys", "values")),
    "MultiHeadAttention": ("x, x, x", ("queries", "keys", "values")),
    "GraphAttention": ("x, [(0, 1), (1, 0)]", ("features_list", "graphs")),
    "TemporalAttention": ("x", ("sequences", "timestamps_list")),
    "HierarchicalAttention": ("[x, x]", ("levels_list", "level_weights_list")),
}


CONFIG = {"num_heads": 1, "head_dim": 4}  # MultiHeadAttention's embed_dim: 4, the columns of x below


def make(name: str):
    return getattr(rv, name)(CONFIG)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_an_object_made_without_init_raises_instead_of_crashing(name):
    # Cls.__new__(Cls) skips __init__: the object holds no native object. Every use raises
    # InvalidInputError (with a pybind11 subclass the C++ value was never built: a crash).
    args = CLASSES[name][0]
    code = textwrap.dedent(
        f"""
        import asyncio, pickle
        import numpy as np, ruvector as rv
        x = np.ones((2, 4), np.float32)
        obj = rv.{name}.__new__(rv.{name})
        uses = [
            lambda: obj.compute({args}),
            lambda: obj.config,
            lambda: obj.compute_batch(*[[a] for a in ({args},)]),  # one item
            lambda: asyncio.run(obj.compute_async({args})),
            lambda: pickle.dumps(obj),
            lambda: rv.{name}.compute(obj, {args}),
        ]
        for use in uses:
            try:
                use()
            except rv.InvalidInputError as e:
                assert "never initialised" in str(e), e
            else:
                raise SystemExit("no error")
        assert repr(obj).startswith("<ruvector.")
        # the object can still be set up the way pickle does
        obj.__setstate__(rv.{name}({CONFIG}).__getstate__())
        print("ok", type(obj.compute({args})).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0 and out.stdout.split() == ["ok", "AttentionOutput"], out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_public_class_holds_the_native_object(name):
    cls, native = getattr(rv, name), getattr(_native, name)
    assert not issubclass(cls, native)
    obj = make(name)
    assert isinstance(obj, cls) and type(obj._impl) is native
    # properties read the native object; methods are the native ones, bound per instance
    assert obj.config == obj._impl.config
    assert obj.compute == obj._impl.compute and obj._prepare == obj._impl._prepare
    for attr, value in vars(native).items():
        if isinstance(value, property):
            assert isinstance(vars(cls)[attr], property) and vars(cls)[attr].__doc__ == value.__doc__


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_generated_methods_have_real_signatures_and_docstrings(name):
    cls = getattr(rv, name)
    columns = CLASSES[name][1]
    for method in (cls.compute_batch, cls.compute_batch_async):
        params = inspect.signature(method).parameters
        assert tuple(params)[: len(columns) + 1] == ("self", *columns)
        assert tuple(params)[len(columns) + 1 :] == ("batch_config", "progress", "kwargs")
        assert method.__doc__ and method.__qualname__ == f"{name}.{method.__name__}"
        hints = typing.get_type_hints(method)
        assert set(hints) >= {*columns, "batch_config", "progress", "return"}
    assert inspect.iscoroutinefunction(cls.compute_batch_async) and inspect.iscoroutinefunction(cls.compute_async)
    compute = inspect.signature(cls.compute)
    assert next(iter(compute.parameters)) == "self" and compute.parameters["need_weights"].default is True
    assert compute.parameters["need_weights"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(cls.compute_async) == compute
    assert next(iter(inspect.signature(cls).parameters)) == "config"
    assert cls.__doc__ and cls.compute.__doc__.startswith("compute(")
    text = pydoc_text(cls)
    assert f"compute_batch(self, {columns[0]}" in text


def pydoc_text(obj) -> str:
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


def test_optional_columns_default_to_none():
    assert inspect.signature(rv.TemporalAttention.compute_batch).parameters["timestamps_list"].default is None
    queries = inspect.signature(rv.DotProductAttention.compute_batch).parameters["queries"]
    assert queries.default is inspect.Parameter.empty


def test_subclasses_override_and_extend(rng):
    calls = []

    class Logged(rv.DotProductAttention):
        def __init__(self, scale: float) -> None:
            super().__init__({"scale": scale})
            self.note = "mine"

        def compute(self, *args, **kwargs):
            calls.append("compute")
            return super().compute(*args, **kwargs)

        def _prepare(self, *args, **kwargs):
            calls.append("prepare")
            return super()._prepare(*args, **kwargs)

    attn = Logged(0.5)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    expected = rv.DotProductAttention({"scale": 0.5}).compute(x, x, x).values
    np.testing.assert_array_equal(attn.compute(x, x, x).values, expected)
    attn.compute_batch([x, x], [x, x], [x, x])
    assert calls == ["compute", "prepare", "prepare"]
    clone = copy.copy(attn)  # as pickle does: Logged.__new__, then __setstate__ (the native state only)
    assert type(clone) is Logged and clone.config.scale == 0.5
    np.testing.assert_array_equal(clone.compute(x, x, x).values, expected)
    assert calls[-1] == "compute"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_copies_are_independent_objects_with_the_same_state(name):
    obj = make(name)
    for clone in (copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        assert type(clone) is type(obj) and clone._impl is not obj._impl
        assert clone.config == obj.config and repr(clone).split(" at ")[0] == repr(obj).split(" at ")[0]


def test_the_package_has_no_import_cycle():
    package = os.path.dirname(rv.__file__)
    imports: dict[str, set[str]] = {}
    for file in os.listdir(package):
        if not file.endswith(".py") or file == "__init__.py":
            continue
        with open(os.path.join(package, file), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        found = imports.setdefault(file[:-3], set())
        for node in ast.walk(tree):  # also imports inside functions
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module] if node.module else [a.name for a in node.names])
    seen: list[str] = []

    def visit(module: str) -> None:
        assert module not in seen, "import cycle: " + " -> ".join([*seen, module])
        seen.append(module)
        for dependency in sorted(imports.get(module, ())):
            visit(dependency)
        seen.pop()

    for module in sorted(imports):
        visit(module)

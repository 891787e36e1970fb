"""The base of every public mechanism class: it holds the native object and generates the rest.

A public class names its native class and its compute_batch columns::

    class TemporalAttention(Mechanism, _TemporalAttention, native=_native.TemporalAttention,
                            columns=(Column("sequences"), Column("timestamps_list", optional=True)),
                            batch_doc="compute over B sequences ...")

(``_TemporalAttention`` is the native class for type checkers only, ``object`` at run time) and
gets: ``__init__`` (the native constructor's arguments), the native properties and methods
(``compute``, ``get_weights``, ...), ``repr``, pickling, ``compute_async``, and
``compute_batch`` / ``compute_batch_async`` with the columns as real parameters.

The object holds the native one in ``_impl`` (composition, as boost-histogram's ``Histogram``
holds ``_hist``) instead of subclassing it: a native object whose C++ constructor never ran
(what ``Cls.__new__(Cls)`` made when the public class was a native subclass, pybind11 issue
6153) crashed on first use; now such an object has no ``_impl`` and raises InvalidInputError.
The native bound methods are stored on each instance, so ``obj.compute(...)`` calls the native
method directly, without a Python frame (tiny calls are benchmarked); the class keeps a
delegating method of the same name for ``help()``, for ``Cls.compute(obj, ...)`` and for
subclasses that override it (then the instance does not shadow the override).
"""

from __future__ import annotations

import ast
import inspect
import operator
import os
import types
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from . import _async, _layer_file, _native
from ._batch import BatchConfig, BatchRun, Column, ProgressCallback, argument_error
from ._errors import InvalidInputError

if TYPE_CHECKING:
    from ._native import AttentionOutput


class _NoNativeObject:
    """``_impl`` of an object whose ``__init__`` never ran (``Cls.__new__(Cls)``) or failed."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        name = type(obj).__name__
        raise InvalidInputError(
            f"this {name} was never initialised ({name}.__new__ without __init__): "
            f"create it with {name}(...) or by unpickling one"
        )


def _signature(native: Any) -> inspect.Signature | None:
    """The signature pybind11 writes on the first line of a native function's docstring,
    without its annotations (pybind11's are ``object`` for most arguments); None when absent."""
    first_line = (getattr(native, "__doc__", None) or "").split("\n", 1)[0]
    try:
        definition = ast.parse(f"def {first_line.split(' -> ')[0]}: pass").body[0]
        assert isinstance(definition, ast.FunctionDef)
        args = definition.args
        if args.vararg or args.kwarg:  # overloads: "(*args, **kwargs)", then one line each
            return None
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        params = [
            inspect.Parameter(
                a.arg,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if d is None else ast.literal_eval(d),
            )
            for a, d in zip(positional, defaults, strict=True)
        ]
        params += [
            inspect.Parameter(
                a.arg,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if d is None else ast.literal_eval(d),
            )
            for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        ]
        return inspect.Signature(params)
    except (SyntaxError, ValueError, AssertionError, IndexError):
        return None


def _named(function: Any, cls: type, name: str, doc: str | None, native: Any = None) -> Any:
    function.__name__ = name
    function.__qualname__ = f"{cls.__qualname__}.{name}"
    function.__module__ = cls.__module__
    function.__doc__ = doc
    if native is not None and (signature := _signature(native)) is not None:
        function.__signature__ = signature
    return function


def _delegate(cls: type, name: str, native: Any) -> Callable[..., Any]:
    """``cls.name``: calls the native method of the same name on ``self._impl``."""

    def method(self: Mechanism, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._impl, name)(*args, **kwargs)

    return _named(method, cls, name, native.__doc__, native)  # type: ignore[no-any-return]


def _constructor(cls: type, native_class: type) -> Callable[..., None]:
    def __init__(self: Mechanism, *args: Any, **kwargs: Any) -> None:
        self._adopt(type(self)._native_class(*args, **kwargs))

    native = vars(native_class)["__init__"]
    return _named(__init__, cls, "__init__", native.__doc__, native)  # type: ignore[no-any-return]


def _batch_methods(cls: type, columns: Sequence[Column], doc: str) -> None:
    """compute_batch and compute_batch_async with the columns as their positional parameters,
    written as source (as dataclasses writes __init__) so that they have real signatures and
    bind their arguments at C speed."""
    params = ", ".join(f"{c.name}: {c.annotation}" + (" = None" if c.optional else "") for c in columns)
    values = "".join(f"{c.name}, " for c in columns)
    keywords = "batch_config: BatchConfig | dict[str, Any] | None = None, progress: ProgressCallback | None = None"
    source = (
        "from __future__ import annotations\n"  # the annotations stay text, as in this module
        f"def compute_batch(self, {params}, *, {keywords}, **kwargs: Any) -> list[AttentionOutput]:\n"
        f"    return BatchRun(self, COLUMNS, ({values}), kwargs, batch_config, progress).run()\n"
        f"async def compute_batch_async(self, {params}, *, {keywords}, **kwargs: Any) -> list[AttentionOutput]:\n"
        f"    return await BatchRun(self, COLUMNS, ({values}), kwargs, batch_config, progress).run_async()\n"
    )
    namespace: dict[str, Any] = {"BatchRun": BatchRun, "COLUMNS": columns}
    namespace.update(Any=Any, Sequence=Sequence, BatchConfig=BatchConfig, ProgressCallback=ProgressCallback)
    namespace.update(AttentionOutput=_native.AttentionOutput, GraphStructure=_native.GraphStructure)  # get_type_hints
    exec(source, namespace)  # our own text: the column names are identifiers
    for name, method_doc in (("compute_batch", doc), ("compute_batch_async", "Awaitable form of compute_batch.")):
        if name not in vars(cls):
            setattr(cls, name, _named(namespace[name], cls, name, method_doc))


def _defined_in_python(cls: type, name: str) -> bool:
    """Whether ``cls`` or a Python base between it and Mechanism defines ``name`` (a native
    method of that name is then not exposed over it)."""
    return any(name in vars(base) for base in cls.__mro__[: cls.__mro__.index(Mechanism)])


class Mechanism:
    """Holds a native mechanism (``_impl``) and exposes it; see the module's docstring."""

    _native_class: ClassVar[Any]
    # The keyword options of the constructor, each also a read-only property of the same name:
    # what save() writes beside the config and ruvector.load() accepts (ruvector/_io.py).
    _options: ClassVar[tuple[str, ...]] = ()
    # compute_batch(..., name=value): a keyword array whose item is not 2-D lists its item rank
    # here (e.g. {"query": 1}), so that a per-item form (one more dimension, or a list of such
    # arrays) is told apart from one value shared by all items.
    _batch_item_ndim: ClassVar[Mapping[str, int]] = {}
    # native method name → the class's delegating method (set where `native=` is given)
    _delegates: ClassVar[dict[str, Any]] = {}
    # the native bound methods each instance stores: those its class does not override
    _per_instance: ClassVar[tuple[str, ...]] = ()
    _impl: Any = _NoNativeObject()

    def __init_subclass__(
        cls,
        native: type | None = None,
        columns: Sequence[Column] = (),
        batch_doc: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if native is not None:
            cls._native_class = native
            cls._delegates = {}
            for name, attr in vars(native).items():
                if name.startswith("__") or name.startswith("_pybind11") or _defined_in_python(cls, name):
                    continue
                if isinstance(attr, property):  # read through _impl at C speed, no Python frame
                    setattr(cls, name, property(operator.attrgetter(f"_impl.{name}"), doc=attr.__doc__))
                else:
                    cls._delegates[name] = _delegate(cls, name, attr)
                    setattr(cls, name, cls._delegates[name])
            if "__init__" not in vars(cls):
                setattr(cls, "__init__", _constructor(cls, native))  # noqa: B010
            if "__repr__" in vars(native) and "__repr__" not in vars(cls):
                setattr(cls, "__repr__", Mechanism._native_repr)  # noqa: B010
            if "compute_async" not in vars(cls):  # a copy of the generic one, with compute's signature
                generic = vars(Mechanism)["compute_async"]
                copy = types.FunctionType(generic.__code__, generic.__globals__)
                compute_async = _named(copy, cls, "compute_async", generic.__doc__, vars(native).get("compute"))
                setattr(cls, "compute_async", compute_async)  # noqa: B010
            _batch_methods(cls, columns, batch_doc)
        cls._per_instance = tuple(name for name, method in cls._delegates.items() if getattr(cls, name) is method)

    def _adopt(self, native: Any) -> None:
        """Holds ``native`` and stores its bound methods on this instance (see the module)."""
        # setattr, not self.__dict__[...]: CPython keeps such attributes in the object's inline
        # values (shared keys), the fastest lookup; touching __dict__ would materialise a dict
        self._impl = native
        for name in type(self)._per_instance:
            setattr(self, name, getattr(native, name))

    def __getstate__(self) -> Any:
        return self._impl.__getstate__()

    def __setstate__(self, state: Any) -> None:
        native_class = type(self)._native_class
        native = native_class.__new__(native_class)
        native.__setstate__(state)  # a corrupt state raises InvalidInputError
        self._adopt(native)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this layer to a safetensors file: its weights under their torch/PyG names, its
        class and constructor arguments in the file's metadata; ``ruvector.load(path)`` reads it
        back (docs/contract.md §9). Needs the ``safetensors`` package (``ruvector-latent[io]``)."""
        _layer_file.save(self, path)

    def _native_repr(self) -> str:
        try:
            return repr(self._impl)
        except InvalidInputError:  # never initialised: a repr still works (debuggers, pytest)
            return object.__repr__(self)

    async def compute_async(self, *args: Any, **kwargs: Any) -> AttentionOutput:
        """Awaitable form of ``compute`` (same arguments); runs on the pool, GIL released.
        Errors (the same types as ``compute`` raises) surface when awaited."""
        try:
            job = self._prepare(*args, **kwargs)  # type: ignore[attr-defined]
        except TypeError as e:
            raise argument_error(e, "compute_async", kwargs) from None
        output: AttentionOutput = await _async.run_job_async(job)
        return output

    if TYPE_CHECKING:
        # Made per class by __init_subclass__, with the class's columns as parameters.
        def compute_batch(
            self,
            *columns: Any,
            batch_config: BatchConfig | dict[str, Any] | None = None,
            progress: ProgressCallback | None = None,
            **kwargs: Any,
        ) -> list[AttentionOutput]: ...

        async def compute_batch_async(
            self,
            *columns: Any,
            batch_config: BatchConfig | dict[str, Any] | None = None,
            progress: ProgressCallback | None = None,
            **kwargs: Any,
        ) -> list[AttentionOutput]: ...


class WeightedMechanism(Mechanism):
    """A mechanism with trained parameters: ``set_weights`` takes a whole model's state_dict."""

    def set_weights(self, weights: Mapping[str, Any], *, prefix: str = "") -> None:
        """Replace parameters from ``{name: array}`` with torch's / PyG's names and shapes (torch
        tensors or ndarrays; float64 is converted).

        With ``prefix``, only the names that start with it are read, with it stripped, so a
        whole model's ``state_dict()`` loads layer by layer:
        ``conv1.set_weights(model.state_dict(), prefix="conv1.")``. After that, an unknown name,
        a missing required one (MultiHeadAttention needs all; GraphAttention takes all or some)
        or a wrong shape raises InvalidInputError naming it, and the layer keeps its old
        weights; a prefix that matches no name is refused."""
        if not isinstance(prefix, str):
            raise InvalidInputError(f"prefix must be a str (e.g. 'conv1.'), got {type(prefix).__name__}")
        if prefix:
            if not isinstance(weights, Mapping):
                raise InvalidInputError(
                    f"weights must be a mapping of name → array (e.g. a state_dict()), got {type(weights).__name__}"
                )
            selected = {k[len(prefix) :]: v for k, v in weights.items() if isinstance(k, str) and k.startswith(prefix)}
            if not selected:
                heads = sorted({k.split(".", 1)[0] + "." for k in weights if isinstance(k, str) and "." in k})
                raise InvalidInputError(
                    f"no weight name starts with prefix {prefix!r}"
                    + (f"; the names given start with {', '.join(map(repr, heads))}" if heads else "")
                )
            weights = selected
        self._impl.set_weights(weights)


__all__ = ["Column", "Mechanism", "WeightedMechanism"]

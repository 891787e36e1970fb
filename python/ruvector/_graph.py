"""Graph attention (GAT / GATv2, docs/contract.md §4): the native layer plus async and batch calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from . import _native
from ._base import Column, WeightedMechanism
from ._errors import InvalidConfigError
from ._native import GraphStructure

if TYPE_CHECKING:  # what the held native object gives (see _mechanisms.py)
    _GraphAttention = _native.GraphAttention
else:
    _GraphAttention = object


class GraphAttention(
    WeightedMechanism,
    _GraphAttention,
    native=_native.GraphAttention,
    columns=(
        Column("features_list"),
        # one GraphStructure may stand for every item (the same graph, different features)
        Column("graphs", "Sequence[Any] | GraphStructure", shared=GraphStructure),
    ),
    batch_doc="compute over B items: features ``[B, N, F]`` or a list of ``[Nᵢ, F]`` arrays, and "
    "one graph per item (or one GraphStructure shared by all).",
):
    """A GAT (``variant="gat"``) or GATv2 (``variant="gatv2"``) layer with the semantics,
    parameter names and shapes of ``torch_geometric.nn.GATConv`` / ``GATv2Conv``.

    ``compute(node_features [N, F], graph, *, need_weights=True)``: ``graph`` is a
    :class:`GraphStructure`, a sequence of ``(source, target)`` pairs or an integer array
    ``[E, 2]`` over the N nodes. Values ``[N, H·C]`` (concat) or ``[N, C]``; weights ``[E', H]``
    for the edges in ``metadata["edges"]``. ``node_features`` may be a pair ``(x_src, x_dst)``
    (bipartite, as PyG; the graph then has ``num_nodes=(N_src, N_dst)``), and
    ``targets=ids`` computes only those rows, at a cost that follows their in-edges.
    """

    # save/load (ruvector/_io.py): the constructor options, each a read-only property
    _options = (
        "in_features",
        "concat",
        "negative_slope",
        "add_self_loops",
        "edge_dim",
        "variant",
        "fill_value",
        "residual",
        "share_weights",
    )

    # compute_batch(..., targets=...): one 1-D id array for every item, or a list of them (or a
    # [B, T] array), one per item
    _batch_item_ndim: ClassVar[Mapping[str, int]] = {"targets": 1}

    @classmethod
    def from_pyg(cls, module: Any) -> GraphAttention:
        """A layer with the configuration and weights of a live ``torch_geometric.nn.GATConv`` or
        ``GATv2Conv``, giving the module's eval-mode outputs. An option or parameter this layer
        cannot reproduce raises :class:`InvalidConfigError` naming it; ``dropout`` (no effect in
        eval mode) is accepted. torch is imported here only, never by ``import ruvector``."""
        return cls._adopt_new(_from_pyg(module))

    @classmethod
    def _adopt_new(cls, native: Any) -> GraphAttention:
        layer = cls.__new__(cls)
        layer._adopt(native)
        return layer


_FILL_MODES = ("mean", "add", "max", "min", "mul")
# Methods whose override by a subclass would change what the module computes.
_BEHAVIOUR = (
    "forward",
    "message",
    "edge_update",
    "aggregate",
    "update",
    "propagate",
    "edge_updater",
    "message_and_aggregate",
)


def _refuse(option: str, why: str) -> InvalidConfigError:
    return InvalidConfigError(f"GraphAttention.from_pyg: cannot reproduce {option}: {why}")


def _from_pyg(m: Any) -> Any:
    import torch  # type: ignore[import-not-found, unused-ignore]  # (m is a torch module)
    from torch_geometric.nn import GATConv, GATv2Conv  # type: ignore[import-untyped, import-not-found, unused-ignore]

    if isinstance(m, GATv2Conv):
        base, variant = GATv2Conv, "gatv2"
    elif isinstance(m, GATConv):
        base, variant = GATConv, "gat"
    else:
        raise InvalidConfigError(
            f"GraphAttention.from_pyg takes a torch_geometric.nn.GATConv or GATv2Conv, got {type(m).__name__}"
        )
    # A method a subclass defines (PyG replaces propagate and edge_updater by generated code and
    # keeps what they were as _orig_<name>: a subclass's own definition shows there).
    for klass in type(m).__mro__:
        if klass is base:
            break
        own = vars(klass)
        for name in _BEHAVIOUR:
            f = own.get(f"_orig_{name}", own.get(name))
            if f is not None and getattr(f, "__qualname__", "") == f"{klass.__qualname__}.{name}":
                raise _refuse(f"{klass.__name__}.{name}", f"it overrides {base.__name__}.{name}")
    if getattr(m, "aggr", "add") not in ("add", "sum"):
        raise _refuse("aggr", f"aggr={m.aggr!r}; this layer sums messages (aggr='add')")
    if getattr(m, "flow", "source_to_target") != "source_to_target":
        raise _refuse("flow", f"flow={m.flow!r}; messages flow source_to_target here")
    if getattr(m, "_explain", None):
        raise _refuse("explain", "the module is in explain mode")
    for hooks in (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_propagate_forward_pre_hooks",
        "_propagate_forward_hooks",
        "_message_forward_pre_hooks",
        "_message_forward_hooks",
        "_aggregate_forward_pre_hooks",
        "_aggregate_forward_hooks",
        "_message_and_aggregate_forward_pre_hooks",
        "_message_and_aggregate_forward_hooks",
        "_edge_update_forward_pre_hooks",
        "_edge_update_forward_hooks",
    ):
        if getattr(m, hooks, None):
            raise _refuse(hooks.strip("_"), "the module has hooks registered, which change its outputs")

    state = m.state_dict()
    for key, value in state.items():
        if isinstance(value, torch.nn.parameter.UninitializedParameter):
            raise _refuse(
                "in_channels", f"{key} is not initialised yet (lazy in_channels=-1): run the module once first"
            )
    in_channels = m.in_channels
    if isinstance(in_channels, int):
        source = "lin.weight" if variant == "gat" else "lin_l.weight"
        in_features: Any = int(state[source].shape[1]) if in_channels < 0 else in_channels
    else:
        src, dst = in_channels
        src_key, dst_key = (
            ("lin_src.weight", "lin_dst.weight") if variant == "gat" else ("lin_l.weight", "lin_r.weight")
        )
        in_features = (
            int(state[src_key].shape[1]) if src < 0 else int(src),
            int(state[dst_key].shape[1]) if dst < 0 else int(dst),
        )
    fill = m.fill_value
    if isinstance(fill, torch.Tensor):
        if fill.numel() != 1:
            raise _refuse(
                "fill_value",
                f"a tensor of {fill.numel()} values (one per edge feature): give a number or a "
                f"reduction name ({', '.join(_FILL_MODES)})",
            )
        fill = float(fill.item())
    elif isinstance(fill, str):
        if fill not in _FILL_MODES:
            raise _refuse("fill_value", f"{fill!r} is none of {', '.join(_FILL_MODES)}")
    elif isinstance(fill, (int, float)) and not isinstance(fill, bool):
        fill = float(fill)
    else:
        raise _refuse("fill_value", f"{fill!r} is neither a number nor a reduction name")
    options: dict[str, Any] = dict(
        in_features=in_features,
        concat=bool(m.concat),
        negative_slope=float(m.negative_slope),
        add_self_loops=bool(m.add_self_loops),
        edge_dim=None if m.edge_dim is None else int(m.edge_dim),
        variant=variant,
        fill_value=fill,
        residual=getattr(m, "res", None) is not None,
    )
    if variant == "gatv2":
        options["share_weights"] = bool(m.share_weights)
    config = _native.AttentionConfig(
        num_heads=int(m.heads), head_dim=int(m.out_channels), dropout=0.0, use_bias=m.bias is not None
    )
    layer = _native.GraphAttention(config, **options)
    known = set(layer.get_weights())
    unknown = sorted(set(state) - known)
    if unknown:
        raise _refuse(unknown[0], f"{type(m).__name__} holds {', '.join(unknown)}, which a {base.__name__} has not")
    missing = sorted(known - set(state))
    if missing:
        raise _refuse(missing[0], f"the module has no {', '.join(missing)}")
    layer.set_weights({k: v.detach().to("cpu", torch.float32) for k, v in state.items()})
    return layer


__all__ = ["GraphAttention", "GraphStructure"]

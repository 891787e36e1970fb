"""Graph attention (GAT / GATv2, docs/contract.md §4): the native layer plus async and batch calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _native
from ._base import Column, WeightedMechanism
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
    for the edges in ``metadata["edges"]``.
    """

    _options = ("in_features", "concat", "negative_slope", "add_self_loops", "edge_dim", "variant")  # save/load


__all__ = ["GraphAttention", "GraphStructure"]

"""Graph attention (GAT / GATv2, SPEC §4): the native layer plus async and batch calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _native
from ._async import AsyncBatchMixin, ProgressCallback
from ._mechanisms import BatchConfig
from ._native import GraphStructure


def _graph_column(features_list: Sequence[Any], graphs: Any) -> Any:
    """One GraphStructure may stand for every item (the same graph, different features)."""
    if isinstance(graphs, GraphStructure) and hasattr(features_list, "__len__"):
        return [graphs] * len(features_list)
    return graphs


class GraphAttention(AsyncBatchMixin, _native.GraphAttention):
    """A GAT (``variant="gat"``) or GATv2 (``variant="gatv2"``) layer with the semantics,
    parameter names and shapes of ``torch_geometric.nn.GATConv`` / ``GATv2Conv``.

    ``compute(node_features [N, F], graph, *, need_weights=True)``: ``graph`` is a
    :class:`GraphStructure`, a sequence of ``(source, target)`` pairs or an integer array
    ``[E, 2]`` over the N nodes. Values ``[N, H·C]`` (concat) or ``[N, C]``; weights ``[E', H]``
    for the edges in ``metadata["edges"]``.
    """

    def compute_batch(
        self,
        features_list: Sequence[Any],
        graphs: Sequence[Any] | GraphStructure,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """compute over B items: features ``[B, N, F]`` or a list of ``[Nᵢ, F]`` arrays, and
        one graph per item (or one GraphStructure shared by all)."""
        columns = [("features_list", features_list, False), ("graphs", _graph_column(features_list, graphs), False)]
        return self._run_batch(columns, kwargs, batch_config, progress)

    async def compute_batch_async(
        self,
        features_list: Sequence[Any],
        graphs: Sequence[Any] | GraphStructure,
        *,
        batch_config: BatchConfig | dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        **kwargs: Any,
    ) -> list[_native.AttentionOutput]:
        """Awaitable form of compute_batch."""
        columns = [("features_list", features_list, False), ("graphs", _graph_column(features_list, graphs), False)]
        return await self._run_batch_async(columns, kwargs, batch_config, progress)


__all__ = ["GraphAttention", "GraphStructure"]

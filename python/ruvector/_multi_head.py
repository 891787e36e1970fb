"""MultiHeadAttention: the native layer plus async and batch calls (docs/contract.md §4, §5),
and ``from_torch`` to serve a trained ``torch.nn.MultiheadAttention`` (§9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from . import _native
from ._base import WeightedMechanism
from ._errors import InvalidConfigError
from ._mechanisms import QUERY_KEY_VALUE_BATCH_DOC, QUERY_KEY_VALUE_COLUMNS

if TYPE_CHECKING:  # what the held native object gives (see _mechanisms.py)
    _MultiHeadAttention = _native.MultiHeadAttention
else:
    _MultiHeadAttention = object

# What a torch.nn.MultiheadAttention may hold: the parameters this layer reproduces (by
# state_dict name) and the attributes that set its configuration or do not change eval-mode
# outputs (dropout acts in training only; batch_first only moves the batch axis).
_TORCH_PARAMETERS = frozenset(
    {
        "in_proj_weight",
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "in_proj_bias",
        "bias_k",
        "bias_v",
        "out_proj.weight",
        "out_proj.bias",
    }
)


class MultiHeadAttention(
    WeightedMechanism,
    _MultiHeadAttention,
    native=_native.MultiHeadAttention,
    columns=QUERY_KEY_VALUE_COLUMNS,
    batch_doc=QUERY_KEY_VALUE_BATCH_DOC,
):
    """torch.nn.MultiheadAttention's layer (batch_first, one sequence per call): in-projections,
    per-head scaled dot-product attention, out-projection; weights under torch's state_dict
    names. Masks: True = may attend; key_padding_mask: True = ignore that key (torch's)."""

    # compute_batch(..., key_padding_mask=...): one [Lk] per item ([B, Lk] or a list)
    _batch_item_ndim: ClassVar[dict[str, int]] = {"key_padding_mask": 1}

    @classmethod
    def from_torch(cls, module: Any) -> MultiHeadAttention:
        """A layer with ``module``'s configuration and weights (a ``torch.nn.MultiheadAttention``),
        giving its eval-mode outputs: embed_dim, num_heads, kdim, vdim, bias, add_bias_kv and
        add_zero_attn are reproduced, dropout is kept (it acts only with ``training=True``),
        batch_first does not matter (one sequence per call). Anything else the module holds (a
        parameter, buffer, submodule or hook a subclass adds, an overridden forward) raises
        InvalidConfigError naming it. Weights are copied to float32 on the CPU."""
        try:
            import torch
        except ImportError:  # torch is only needed here
            raise InvalidConfigError("from_torch needs torch installed (pip install torch)") from None
        if not isinstance(module, torch.nn.MultiheadAttention):
            raise InvalidConfigError(
                f"from_torch takes a torch.nn.MultiheadAttention, got {type(module).__name__}"
                + ("" if not isinstance(module, torch.nn.Module) else ": build this layer from its own weights")
            )
        kind = type(module).__name__
        if type(module).forward is not torch.nn.MultiheadAttention.forward:
            raise InvalidConfigError(f"{kind} overrides forward: its outputs cannot be reproduced")
        state = module.state_dict()
        for name in state:
            if name not in _TORCH_PARAMETERS:
                raise InvalidConfigError(f"{kind} holds '{name}', which MultiHeadAttention does not have")
        for name, child in module.named_modules():
            if name not in ("", "out_proj"):
                raise InvalidConfigError(f"{kind} holds the submodule '{name}', which MultiHeadAttention does not have")
            for hooks in ("_forward_hooks", "_forward_pre_hooks"):
                if getattr(child, hooks, None):
                    where = f"'{name}'" if name else kind
                    raise InvalidConfigError(f"{where} has {hooks[1:]}: their effect cannot be reproduced")
        if not isinstance(module.out_proj, torch.nn.Linear):
            raise InvalidConfigError(f"{kind}.out_proj is a {type(module.out_proj).__name__}, not a Linear")
        bias = module.in_proj_bias is not None
        if (module.out_proj.bias is not None) != bias:
            raise InvalidConfigError(
                f"{kind} has {'in_proj_bias but no out_proj.bias' if bias else 'out_proj.bias but no in_proj_bias'}: "
                "torch's bias option gives both or neither"
            )
        add_bias_kv = module.bias_k is not None
        if (module.bias_v is not None) != add_bias_kv:
            raise InvalidConfigError(f"{kind} has only one of bias_k and bias_v: add_bias_kv gives both")
        packed = module.kdim == module.embed_dim and module.vdim == module.embed_dim
        if bool(module._qkv_same_embed_dim) != packed:
            raise InvalidConfigError(f"{kind}._qkv_same_embed_dim does not match its kdim/vdim")
        heads = int(module.num_heads)
        layer = cls(
            {
                "num_heads": heads,
                "head_dim": module.embed_dim // heads,
                "dropout": float(module.dropout),
                "use_bias": bias,
            },
            embed_dim=module.embed_dim,
            kdim=module.kdim,
            vdim=module.vdim,
            add_bias_kv=add_bias_kv,
            add_zero_attn=bool(module.add_zero_attn),
        )
        layer.set_weights({name: t.detach().to(device="cpu", dtype=torch.float32) for name, t in state.items()})
        return layer

    _options = ("embed_dim", "kdim", "vdim", "add_bias_kv", "add_zero_attn")  # save/load (ruvector/_io.py)


__all__ = ["MultiHeadAttention"]

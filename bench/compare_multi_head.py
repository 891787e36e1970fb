"""Rows of bench/compare.py for MultiHeadAttention: ruvector vs torch.nn.MultiheadAttention, and
torch-tensor input vs NumPy input on the same layer.

Same weights (copied from torch's state_dict), same inputs, eval mode under no_grad, the two
run alternately; torch uses as many threads as ruvector's pool. Self-attention (query is key is
value, torch's usual case and its fast path without weights) and cross-attention (separate
query and memory arrays).
"""

from __future__ import annotations

import numpy as np

import ruvector as rv
from harness import Row, TileWatch, limit_seconds, time_blocks, torch_or_none

_torch = torch_or_none


def _flops(lq: int, lk: int, e: int) -> float:
    projections = 2.0 * e * e * (lq + 2 * lk + lq)  # q, k, v in, out
    return projections + 4.0 * lq * lk * e


def run(quick: bool = False) -> list[Row]:
    blocks = 3 if quick else 7
    e, heads, length = 512, 8, 1000
    rng = np.random.default_rng(4)
    torch = _torch()
    mha = rv.MultiHeadAttention({"num_heads": heads}, embed_dim=e)
    module = None
    if torch is not None:
        torch.manual_seed(0)
        module = torch.nn.MultiheadAttention(e, heads, batch_first=True).eval()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn_like(p) / np.sqrt(p.shape[-1]))
        mha.set_weights({k: v.numpy() for k, v in module.state_dict().items()})
    else:
        w = mha.get_weights()
        mha.set_weights(
            {k: rng.standard_normal(a.shape, dtype=np.float32) / np.sqrt(a.shape[-1]) for k, a in w.items()}
        )

    x = rng.standard_normal((length, e), dtype=np.float32)
    memory = rng.standard_normal((length, e), dtype=np.float32)
    rows: list[Row] = []
    for cross in (False, True):
        kv = memory if cross else x
        for weights in (True, False):
            cands = {"ruvector": lambda kv=kv, weights=weights: mha.compute(x, kv, kv, need_weights=weights)}
            if module is not None:
                tx, tkv = torch.from_numpy(x)[None], torch.from_numpy(kv)[None]

                def torch_fn(tx=tx, tkv=tkv, weights=weights):
                    with torch.no_grad():
                        return module(tx, tkv, tkv, need_weights=weights)

                cands["torch"] = torch_fn
                # same numbers before timing them
                ours = mha.compute(x, kv, kv, need_weights=weights)
                theirs = torch_fn()
                np.testing.assert_allclose(ours.values, theirs[0][0].numpy(), rtol=1e-3, atol=1e-4)
            watch = TileWatch()
            t = time_blocks(cands, blocks=blocks, between=watch)
            flops = _flops(length, length, e)
            # inputs and weights read, output (and head-averaged weights) written once
            moved = 4.0 * (3 * length * e + 4 * e * e + length * e + (length * length if weights else 0))
            limit = limit_seconds(flops, heads * length * length, moved)
            case = f"E={e} H={heads} L={length} {'cross' if cross else 'self'}-attn, " + (
                "weights" if weights else "no weights"
            )
            rows.append(
                Row.timed(
                    "multi_head",
                    case,
                    t["ruvector"],
                    "torch nn.MultiheadAttention(batch_first) eval, no_grad" if module is not None else "",
                    t.get("torch"),
                    {"GFLOP/s": f"{flops / t['ruvector'].median / 1e9:.0f}", **watch.note()},
                    limit,
                )
            )
    if torch is not None:
        rows.append(_tensor_input_row(torch, mha, x, memory, blocks))
    return rows


def _tensor_input_row(torch, mha, x, memory, blocks: int) -> Row:
    """torch tensors in vs NumPy arrays in: the same layer on the same memory. Tensors are read
    through DLPack in place (no copy), so the two should take the same time."""
    tx, tm = torch.from_numpy(x), torch.from_numpy(memory)
    np.testing.assert_array_equal(
        mha.compute(tx, tm, tm, need_weights=False).values, mha.compute(x, memory, memory, need_weights=False).values
    )
    t = time_blocks(
        {
            "tensor": lambda: mha.compute(tx, tm, tm, need_weights=False),
            "numpy": lambda: mha.compute(x, memory, memory, need_weights=False),
        },
        blocks=blocks,
    )
    length, e = x.shape
    return Row.timed(
        "multi_head",
        f"E={e} L={length} cross-attn, no weights: torch-tensor input (torch.from_numpy)",
        t["tensor"],
        "ruvector, same layer and data, NumPy input",
        t["numpy"],
        {"note": "tensors read through DLPack without a copy"},
    )


if __name__ == "__main__":
    for row in run():
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        print(
            f"{row.case}: ruvector {row.ruvector_ms:.1f} ms, torch {row.peer_ms or float('nan'):.1f} ms, "
            f"ratio {ratio}, {row.extra}"
        )

"""Rows of bench/compare.py for DotProductAttention (issue 3): ruvector vs torch vs NumPy."""

from __future__ import annotations

import numpy as np

import ruvector as rv
from harness import Row, TileWatch, Timing, limit_seconds, peak_rss_growth, time_blocks, torch_or_none

_torch = torch_or_none


def _numpy_attention(q, k, v, scale):
    s = scale * (q @ k.T)
    s = np.exp(s - s.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return s @ v, s


def _limit(lq: int, lk: int, d: int, weights: bool, causal: bool = False) -> float:
    """Seconds at this run's ceilings: the two products over the allowed (query, key) pairs,
    one exponential a pair, the inputs read and the output (and weights) written once."""
    pairs = lq * (lq + 1) / 2 if causal else lq * lk
    moved = 4.0 * (lq * d + 2 * lk * d + lq * d + (lq * lk if weights else 0))
    return limit_seconds(4.0 * pairs * d, pairs, moved)


def run(quick: bool = False) -> list[Row]:
    blocks = 3 if quick else 7
    torch = _torch()
    rows: list[Row] = []
    rng = np.random.default_rng(1)

    attn = rv.DotProductAttention()
    cases = [(1000, 512, True, False), (1000, 512, False, False), (4096, 64, True, False), (4096, 64, False, False)]
    cases += [(4096, 64, False, True)]
    if not quick:
        cases += [(16384, 64, False, False)]
    for length, dim, weights, causal in cases:
        q, k, v = (rng.standard_normal((length, dim), dtype=np.float32) for _ in range(3))
        scale = 1 / np.sqrt(dim)
        cands = {
            "ruvector": lambda q=q, k=k, v=v, weights=weights, causal=causal: attn.compute(
                q, k, v, causal=causal, need_weights=weights
            )
        }
        peer = ""
        if torch is not None:
            # [B, H, L, D] = [1, 1, L, D]: the layout SDPA's documentation and its fused CPU
            # kernels expect (a 3-D [1, L, D] call takes a slower path in torch 2.13)
            tq, tk, tv = (torch.from_numpy(x).view(1, 1, length, dim) for x in (q, k, v))
            if weights:  # torch's SDPA returns no weights: the matmul-softmax-matmul that does
                peer = "torch matmul-softmax-matmul [1,1,L,D]"

                def torch_fn(tq=tq, tk=tk, tv=tv, scale=scale):
                    with torch.no_grad():
                        w = torch.softmax((tq @ tk.transpose(-2, -1)) * scale, dim=-1)
                        return w @ tv, w
            else:
                peer = f"torch SDPA [1,1,L,D]{' is_causal=True' if causal else ''}"

                def torch_fn(tq=tq, tk=tk, tv=tv, causal=causal):
                    with torch.no_grad():
                        return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

            cands["torch"] = torch_fn
        if length <= 1000 or (not quick and length <= 4096 and not causal):
            cands["numpy"] = lambda q=q, k=k, v=v, scale=scale: _numpy_attention(q, k, v, scale)
        watch = TileWatch()
        t = time_blocks(cands, blocks=blocks, between=watch)
        flops = 4.0 * length * length * dim * (0.5 if causal else 1.0)
        extra = {"GFLOP/s": f"{flops / t['ruvector'].median / 1e9:.0f}"}
        if "numpy" in t:
            extra["numpy ms"] = f"{t['numpy'].median * 1e3:.2f}"
        if "torch" in t:
            extra["torch GFLOP/s"] = f"{flops / t['torch'].median / 1e9:.0f}"
        extra.update(watch.note())
        case = f"L={length} D={dim}{' causal' if causal else ''} {'with' if weights else 'no'} weights"
        rows.append(
            Row.timed(
                "dot_product",
                case,
                t["ruvector"],
                peer,
                t.get("torch"),
                extra,
                _limit(length, length, dim, weights, causal),
            )
        )

    # memory: peak RSS growth of one L=16384, D=64 call without weights, in a fresh process;
    # issue 15's target: what a call takes beyond its output ≤ 0.1× its input
    length, dim = 16384, 64
    input_bytes = 3 * length * dim * 4
    output_bytes = length * dim * 4
    setup = f"""
import numpy as np
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal(({length}, {dim}), dtype=np.float32) for _ in range(3))
"""
    rv_growth = peak_rss_growth(
        setup + "import ruvector as rv\na = rv.DotProductAttention()\na.compute(q[:8], k[:8], v[:8])\n",
        "out = a.compute(q, k, v, need_weights=False)",
    )
    extra = {
        "input MB": f"{input_bytes / 1e6:.1f}",
        "output MB": f"{output_bytes / 1e6:.1f}",
        "ruvector / input": f"{rv_growth / input_bytes:.2f}",
        "beyond output / input ruvector": f"{(rv_growth - output_bytes) / input_bytes:.2f}",
    }
    peer_growth = None
    if torch is not None:
        peer_growth = peak_rss_growth(
            setup
            + "import torch\ntorch.set_num_threads(2)\nF = torch.nn.functional\n"
            + "t = [torch.from_numpy(x)[None, None] for x in (q, k, v)]\n"
            + "F.scaled_dot_product_attention(*(x[:, :, :8] for x in t))\n",
            "out = F.scaled_dot_product_attention(*t)",
        )
        extra["torch / input"] = f"{peer_growth / input_bytes:.2f}"
        extra["beyond output / input torch"] = f"{(peer_growth - output_bytes) / input_bytes:.2f}"
    extra["target"] = "ruvector beyond output / input ≤ 0.1"
    rows.append(
        Row(
            "dot_product",
            f"L={length} D={dim} peak RSS growth (MB, no weights)",
            rv_growth / 1e6,
            "torch SDPA [1,1,L,D]" if torch is not None else "",
            peer_growth / 1e6 if peer_growth is not None else None,
            extra,
        )
    )

    # tiny-call latency from Python, and its limit: the same call stopped before the arithmetic,
    # in the same blocks, by the probes with compute's signature, conversion and checks
    # (bindings/mechanism.hpp): _probe_parse (arguments parsed and validated), _probe_output
    # (+ output allocated and wrapped), _probe_metadata (+ metadata and the AttentionOutput,
    # GIL released as compute does). What compute takes beyond the last is the arithmetic.
    x = rng.standard_normal((2, 2), dtype=np.float32)
    cands = {
        "ruvector": lambda: attn.compute(x, x, x),
        "parse": lambda: attn._probe_parse(x, x, x),  # called as compute is, for the same Python cost
        "output": lambda: attn._probe_output(x, x, x),
        "metadata": lambda: attn._probe_metadata(x, x, x),
    }
    stages = {"parse": "parse µs", "output": "+output µs", "metadata": "+metadata µs"}
    if torch is not None:
        tx = torch.from_numpy(x)[None, None]

        def torch_tiny():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(tx, tx, tx)

        cands["torch"] = torch_tiny
    t = time_blocks(cands, blocks=blocks, min_time=0.05)
    # µs in the ms column: every figure ×1000, the limit too, so "% of limit" is µs over µs
    tiny = {name: Timing(s.median * 1e3, s.low * 1e3, s.high * 1e3) for name, s in t.items()}
    extra = {label: f"{t[stage].median * 1e6:.2f}" for stage, label in stages.items()}
    extra["arithmetic µs"] = f"{(t['ruvector'].median - t['metadata'].median) * 1e6:.2f}"
    extra["unit"] = "µs"
    rows.append(
        Row.timed(
            "dot_product",
            "2x2 call latency (µs, shown in ms column ×1000)",
            tiny["ruvector"],
            "torch SDPA [1,1,2,2]" if torch is not None else "",
            tiny.get("torch"),
            extra,
            tiny["metadata"].median,  # the limit: a no-op call with compute's signature
        )
    )

    # each backend forced in turn, L=1000 D=512 no weights, speed-up over scalar
    q, k, v = (rng.standard_normal((1000, 512), dtype=np.float32) for _ in range(3))
    available = rv._native._available_backends()
    times = {}
    for name in available:
        rv.set_simd_backend(name)
        try:
            times[name] = time_blocks(
                {name: lambda: attn.compute(q, k, v, need_weights=False)}, blocks=max(3, blocks // 2)
            )[name].median
        finally:
            rv.set_simd_backend("auto")
    for name in available:
        rows.append(
            Row(
                "backends",
                f"L=1000 D=512 on {name}",
                times[name] * 1e3,
                "ruvector scalar",
                times["scalar"] * 1e3,
                {"speed-up over scalar": f"{times['scalar'] / times[name]:.1f}x"},
            )
        )
    return rows

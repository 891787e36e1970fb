"""Rows of bench/compare.py for DotProductAttention (issue 3): ruvector vs torch vs NumPy."""

from __future__ import annotations

import numpy as np

import ruvector as rv
from harness import Row, TileWatch, peak_rss_growth, time_alternating, torch_or_none

_torch = torch_or_none


def _numpy_attention(q, k, v, scale):
    s = scale * (q @ k.T)
    s = np.exp(s - s.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return s @ v, s


def gemm_ceiling(repeats: int) -> dict[str, float]:
    """GFLOP/s of a large float32 matmul in this run: the machine's practical ceiling."""
    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    cands = {"numpy": lambda: a @ b}
    torch = _torch()
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        cands["torch"] = lambda: ta @ tb
    t = time_alternating(cands, repeats=repeats)
    return {name: 2 * n**3 / s / 1e9 for name, s in t.items()}


def run(quick: bool = False) -> list[Row]:
    repeats = 3 if quick else 7
    torch = _torch()
    rows: list[Row] = []
    rng = np.random.default_rng(1)
    ceiling = gemm_ceiling(repeats)
    best = max(ceiling.values())
    rows.append(Row("gemm", "2048³ matmul ceiling", 0.0, extra={k: f"{v:.0f} GFLOP/s" for k, v in ceiling.items()}))

    attn = rv.DotProductAttention()
    for length, dim, weights in [(1000, 512, True), (1000, 512, False), (4096, 64, True), (4096, 64, False)]:
        q, k, v = (rng.standard_normal((length, dim), dtype=np.float32) for _ in range(3))
        scale = 1 / np.sqrt(dim)
        cands = {"ruvector": lambda q=q, k=k, v=v, weights=weights: attn.compute(q, k, v, need_weights=weights)}
        peer = ""
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
            if weights:  # torch's SDPA returns no weights: the matmul-softmax-matmul that does
                peer = "torch matmul-softmax-matmul"

                def torch_fn(tq=tq, tk=tk, tv=tv, scale=scale):
                    with torch.no_grad():
                        w = torch.softmax((tq @ tk.T) * scale, dim=-1)
                        return w @ tv, w
            else:
                peer = "torch SDPA"

                def torch_fn(tq=tq, tk=tk, tv=tv):
                    with torch.no_grad():
                        return torch.nn.functional.scaled_dot_product_attention(tq[None], tk[None], tv[None])

            cands["torch"] = torch_fn
        if not quick or length <= 1000:
            cands["numpy"] = lambda q=q, k=k, v=v, scale=scale: _numpy_attention(q, k, v, scale)
        watch = TileWatch()
        t = time_alternating(cands, repeats=repeats, between=watch)
        flops = 4.0 * length * length * dim
        extra = {
            "GFLOP/s": f"{flops / t['ruvector'] / 1e9:.0f}",
            "% of ceiling": f"{100 * flops / t['ruvector'] / 1e9 / best:.0f}",
        }
        if "numpy" in t:
            extra["numpy ms"] = f"{t['numpy'] * 1e3:.2f}"
        if "torch" in t:
            extra["torch GFLOP/s"] = f"{flops / t['torch'] / 1e9:.0f}"
        extra.update(watch.note())
        rows.append(
            Row(
                "dot_product",
                f"L={length} D={dim} {'with' if weights else 'no'} weights",
                t["ruvector"] * 1e3,
                peer,
                t["torch"] * 1e3 if "torch" in t else None,
                extra,
            )
        )

    # memory: peak RSS growth of one L=8192, D=64 call without weights, in a fresh process
    length, dim = 8192, 64
    input_bytes = 3 * length * dim * 4
    setup = f"""
import numpy as np
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal(({length}, {dim}), dtype=np.float32) for _ in range(3))
"""
    rv_growth = peak_rss_growth(
        setup + "import ruvector as rv\na = rv.DotProductAttention()\na.compute(q[:8], k[:8], v[:8])\n",
        "out = a.compute(q, k, v, need_weights=False)",
    )
    extra = {"input MB": f"{input_bytes / 1e6:.1f}", "ruvector / input": f"{rv_growth / input_bytes:.2f}"}
    peer_growth = None
    if torch is not None:
        peer_growth = peak_rss_growth(
            setup
            + "import torch\ntorch.set_num_threads(2)\nF = torch.nn.functional\n"
            + "t = [torch.from_numpy(x)[None] for x in (q, k, v)]\n"
            + "F.scaled_dot_product_attention(*(x[:, :8] for x in t))\n",
            "out = F.scaled_dot_product_attention(*t)",
        )
        extra["torch / input"] = f"{peer_growth / input_bytes:.2f}"
    rows.append(
        Row(
            "dot_product",
            "L=8192 D=64 peak RSS growth (MB, no weights)",
            rv_growth / 1e6,
            "torch SDPA" if torch is not None else "",
            peer_growth / 1e6 if peer_growth is not None else None,
            extra,
        )
    )

    # tiny-call latency from Python
    x = rng.standard_normal((2, 2), dtype=np.float32)
    cands = {"ruvector": lambda: attn.compute(x, x, x)}
    if torch is not None:
        tx = torch.from_numpy(x)[None]

        def torch_tiny():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(tx, tx, tx)

        cands["torch"] = torch_tiny
    t = time_alternating(cands, repeats=repeats, min_time=0.05)
    rows.append(
        Row(
            "dot_product",
            "2x2 call latency (µs, shown in ms column ×1000)",
            t["ruvector"] * 1e6,
            "torch SDPA" if torch is not None else "",
            t["torch"] * 1e6 if "torch" in t else None,
            {"unit": "µs"},
        )
    )

    # each backend forced in turn, L=1000 D=512 no weights, speed-up over scalar
    q, k, v = (rng.standard_normal((1000, 512), dtype=np.float32) for _ in range(3))
    available = rv._native._available_backends()
    times = {}
    for name in available:
        rv.set_simd_backend(name)
        try:
            times[name] = time_alternating(
                {name: lambda: attn.compute(q, k, v, need_weights=False)}, repeats=max(3, repeats // 2)
            )[name]
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

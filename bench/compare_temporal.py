"""Rows of bench/compare.py for TemporalAttention and HierarchicalAttention (issue 6).

Temporal, T=4096, D=64, decay λ=0.01: ruvector against a NumPy implementation, against torch's
scaled_dot_product_attention given the equivalent additive bias (−λ|tᵢ − tⱼ|, −inf where
causality or the window forbid; built once, outside the timing, which favours torch), and
against ruvector's own DotProductAttention at the same size (the decay should be nearly free).
Hierarchical, L=16 levels × 1,000 items × D=256: ruvector against NumPy (and torch when
installed), both vectorised over the levels.

    python bench/compare.py --only temporal [--quick]
"""

from __future__ import annotations

import math

import numpy as np

import ruvector as rv
from harness import Row, time_alternating, torch_or_none

SECTION_T = "temporal"
SECTION_H = "hierarchical"


_torch = torch_or_none


# ---------------------------------------------------------------------------------------------
# Temporal


def temporal_bias(t: np.ndarray, lam: float, causal: bool, window: float | None) -> np.ndarray:
    """The additive [T, T] float32 mask that turns plain attention into temporal attention."""
    dt = np.abs(t[:, None] - t[None, :])
    bias = (-lam * dt).astype(np.float32)
    blocked = np.zeros(bias.shape, dtype=bool)
    if causal:
        blocked |= t[None, :] > t[:, None]
    if window is not None:
        blocked |= dt > window
    np.fill_diagonal(blocked, False)
    bias[blocked] = -np.inf
    return bias


def numpy_temporal(x: np.ndarray, t: np.ndarray, lam: float, causal: bool, window: float | None, scale: float):
    """Plain NumPy (float32 like the others): scores, bias, masked softmax, weights @ X."""
    s = scale * (x @ x.T) + temporal_bias(t, lam, causal, window)
    s = np.exp(s - s.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return s @ x, s


def _temporal_rows(quick: bool, repeats: int, torch) -> list[Row]:
    rows: list[Row] = []
    rng = np.random.default_rng(6)
    length, dim, lam = 4096, 64, 0.01
    scale = 1.0 / math.sqrt(dim)
    x = rng.standard_normal((length, dim), dtype=np.float32)
    sorted_t = np.cumsum(rng.uniform(0.5, 1.5, length))
    dpa = rv.DotProductAttention()

    cases = [
        # (label, timestamps, causal, window, need_weights)
        ("causal, sorted times, no weights", sorted_t, True, None, False),
        ("causal, unsorted times, no weights", rng.permutation(sorted_t), True, None, False),
        ("non-causal, window 500, with weights", sorted_t, False, 500.0, True),
    ]
    if quick:
        cases = cases[:2]
    for label, t, causal, window, weights in cases:
        attn = rv.TemporalAttention(causal=causal, decay_rate=lam, window=window)

        def temporal(attn=attn, t=t, weights=weights):
            return attn.compute(x, t, need_weights=weights)

        # Two alternation groups: ruvector against itself (the target: the decay nearly free),
        # then against the peers, whose own worker threads keep spinning for a while after each
        # call and would slow whichever ruvector call follows them.
        own = {"temporal": temporal, "dot_product": lambda weights=weights: dpa.compute(x, x, x, need_weights=weights)}
        if causal and t is sorted_t:  # the same causal structure for the dot product
            own["dot_product causal"] = lambda weights=weights: dpa.compute(x, x, x, causal=True, need_weights=weights)
        peers = {"temporal": temporal}
        torch_peer = ""
        if torch is not None:
            tx = torch.from_numpy(x)[None, None]  # [B, H, T, D]: SDPA's fast layout
            tbias = torch.from_numpy(temporal_bias(t, lam, causal, window))[None, None]
            if weights:  # SDPA returns no weights: the matmul-softmax-matmul that does
                torch_peer = "torch matmul+bias-softmax-matmul [1,1,T,D]"

                def torch_fn(tx=tx, tbias=tbias):
                    with torch.no_grad():
                        w = torch.softmax((tx @ tx.transpose(-2, -1)) * scale + tbias, dim=-1)
                        return w @ tx, w
            else:
                torch_peer = "torch SDPA [1,1,T,D] + additive bias"

                def torch_fn(tx=tx, tbias=tbias):
                    with torch.no_grad():
                        return torch.nn.functional.scaled_dot_product_attention(tx, tx, tx, attn_mask=tbias)

            peers["torch"] = torch_fn
        peers["numpy"] = lambda t=t, causal=causal, window=window: numpy_temporal(x, t, lam, causal, window, scale)
        own_ms = {k: v * 1e3 for k, v in time_alternating(own, repeats=repeats).items()}
        peer_ms = {k: v * 1e3 for k, v in time_alternating(peers, repeats=repeats).items()}
        flops = 4.0 * length * length * dim
        case = f"T={length} D={dim} λ={lam} {label}"
        extra = {"GFLOP/s (dense count)": f"{flops / own_ms['temporal'] / 1e6:.0f}"}
        for key, name in [
            ("dot_product", "ruvector DotProductAttention"),
            ("dot_product causal", "ruvector DotProductAttention causal"),
        ]:
            if key in own_ms:
                rows.append(Row(SECTION_T, case, own_ms["temporal"], name, own_ms[key], dict(extra)))
        for key, name in [("torch", torch_peer), ("numpy", "numpy")]:
            if key in peer_ms:
                rows.append(Row(SECTION_T, case, peer_ms["temporal"], name, peer_ms[key], dict(extra)))
    return rows


# ---------------------------------------------------------------------------------------------
# Hierarchical


def numpy_hierarchical(x: np.ndarray, scale: float):
    """[L, N, D] levels, mean contexts, softmax across levels against the mean summary."""
    u = x.mean(axis=1)  # [L, D]
    s = scale * np.matmul(x, u[:, :, None])[..., 0]  # [L, N]
    s = np.exp(s - s.max(axis=1, keepdims=True))
    alpha = s / s.sum(axis=1, keepdims=True)
    summaries = np.matmul(alpha[:, None, :], x)[:, 0]  # [L, D]
    z = scale * (summaries @ summaries.mean(axis=0))
    beta = np.exp(z - z.max())
    beta /= beta.sum()
    return beta @ summaries, alpha, summaries


def _hierarchical_rows(quick: bool, repeats: int, torch) -> list[Row]:
    rows: list[Row] = []
    rng = np.random.default_rng(7)
    levels, items, dim = 16, 1000, 256
    scale = 1.0 / math.sqrt(dim)
    x = rng.standard_normal((levels, items, dim), dtype=np.float32)
    as_list = list(x)  # the same levels as 16 separate [N, D] arrays
    attn = rv.HierarchicalAttention()
    cands = {
        "ruvector": lambda: attn.compute(x),
        "ruvector no weights": lambda: attn.compute(x, need_weights=False),
        "ruvector list": lambda: attn.compute(as_list),
        "numpy": lambda: numpy_hierarchical(x, scale),
    }
    if torch is not None:
        tx = torch.from_numpy(x)

        def torch_fn():
            with torch.no_grad():
                u = tx.mean(dim=1)
                alpha = torch.softmax(scale * torch.bmm(tx, u[:, :, None])[..., 0], dim=1)
                s = torch.bmm(alpha[:, None, :], tx)[:, 0]
                beta = torch.softmax(scale * (s @ s.mean(dim=0)), dim=0)
                return beta @ s, alpha, s

        cands["torch"] = torch_fn
    tm = time_alternating(cands, repeats=repeats * 2)
    ms = {k: v * 1e3 for k, v in tm.items()}
    gbps = x.nbytes / tm["ruvector"] / 1e9
    case = f"L={levels} N={items} D={dim}"
    extra = {"input MB": f"{x.nbytes / 1e6:.1f}", "ruvector GB/s of input": f"{gbps:.1f}"}
    rows.append(Row(SECTION_H, case + " with weights", ms["ruvector"], "numpy", ms["numpy"], dict(extra)))
    if "torch" in ms:
        rows.append(Row(SECTION_H, case + " with weights", ms["ruvector"], "torch", ms["torch"], dict(extra)))
    rows.append(Row(SECTION_H, case + " no weights", ms["ruvector no weights"], "numpy", ms["numpy"], dict(extra)))
    rows.append(
        Row(SECTION_H, case + " as a list of arrays", ms["ruvector list"], "ruvector [L,N,D] array", ms["ruvector"])
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    repeats = 3 if quick else 7
    torch = _torch()
    return _temporal_rows(quick, repeats, torch) + _hierarchical_rows(quick, repeats, torch)


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    print(f"SIMD backend {rv.get_simd_backend()} | threads {rv.get_num_threads()}")
    for row in run(quick):
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        print(f"| {row.section} | {row.case} | {row.ruvector_ms:.2f} | {row.peer} | {row.peer_ms:.2f} | {ratio} |")

"""ruvector quick start: attention over the node embeddings of a latent space.

We build 600 node embeddings (D=64) drawn around 6 community centres, as a GNN encoder
would produce for a graph with community structure, and let every node attend over all
nodes. A good latent space makes a node attend mostly to its own community: we measure
that share, compare against plain NumPy, and time both.

    python examples/basic_usage.py
"""

from __future__ import annotations

import time

import numpy as np

import ruvector as rv

SCALE = 0.02  # multiplies Q·Kᵀ, as in PyTorch


def make_latent_space(rng: np.random.Generator, communities: int = 6, per: int = 100, dim: int = 64):
    centres = rng.standard_normal((communities, dim)) * 2.0
    labels = np.repeat(np.arange(communities), per)
    emb = centres[labels] + rng.standard_normal((communities * per, dim))
    return emb.astype(np.float32), labels


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    s = scale * (q @ k.T)
    s = np.exp(s - s.max(axis=1, keepdims=True))
    return (s / s.sum(axis=1, keepdims=True)) @ v


def main() -> None:
    print(
        f"ruvector {rv.__version__} | SIMD backend: {rv.get_simd_backend()} | "
        f"CPU features: {', '.join(rv.get_features())} | threads: {rv.get_num_threads()}"
    )
    rng = np.random.default_rng(7)
    emb, labels = make_latent_space(rng)

    attn = rv.DotProductAttention(rv.AttentionConfig(scale=SCALE, dropout=0.0))
    out = attn.compute(emb, emb, emb)
    print(out)
    same = labels[:, None] == labels[None, :]
    share = (out.weights * same).sum(axis=1)
    print(f"attention mass on the node's own community: mean {share.mean():.3f}, min {share.min():.3f}")

    node = 42
    top = np.argsort(out.weights[node])[::-1][:5]
    print(
        f"node {node} (community {labels[node]}) attends most to nodes {top.tolist()} "
        f"(communities {labels[top].tolist()}), weights {[f'{w:.4f}' for w in out.weights[node, top]]}"
    )

    # the refined embeddings pull each node toward its community centre
    before = np.linalg.norm(emb - emb[labels == labels[node]].mean(axis=0), axis=1)[node]
    after = np.linalg.norm(out.values - out.values[labels == labels[node]].mean(axis=0), axis=1)[node]
    print(f"distance of node {node} to its community mean: {before:.3f} before, {after:.3f} after attention")

    # the same numbers as a plain NumPy float64 computation
    e64 = emb.astype(np.float64)
    ref = numpy_attention(e64, e64, e64, SCALE)
    print(f"max |ruvector - numpy float64| = {np.abs(out.values - ref).max():.2e}")

    big = rng.standard_normal((2048, 64)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        attn.compute(big, big, big, need_weights=False)
    t_rv = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    numpy_attention(big, big, big, 1 / 8)
    t_np = time.perf_counter() - t0
    print(
        f"L=2048, D=64 self-attention: ruvector {t_rv * 1e3:.2f} ms (streaming, no weights), NumPy {t_np * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()

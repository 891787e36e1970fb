"""A typed use of ruvector, checked by mypy --strict (see [tool.mypy] in pyproject.toml).

python examples/typed_example.py
mypy examples/typed_example.py
"""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt

import ruvector as rv


def attend(tokens: npt.NDArray[np.float32], *, causal: bool) -> rv.AttentionOutput:
    attn = rv.DotProductAttention(rv.AttentionConfig(dropout=0.0))
    return attn.compute(tokens, tokens, tokens, causal=causal)


async def attend_many(batch: list[npt.NDArray[np.float32]]) -> list[rv.AttentionOutput]:
    attn = rv.DotProductAttention()
    return await attn.compute_batch_async(batch, batch, batch, need_weights=False)


def main() -> None:
    rng = np.random.default_rng(3)
    tokens = rng.standard_normal((12, 16)).astype(np.float32)
    out = attend(tokens, causal=True)
    weights = out.weights
    assert weights is not None
    print(f"backend={rv.get_simd_backend()} values={out.values.shape} first-row weights sum={weights[0].sum():.3f}")
    batch = [rng.standard_normal((n, 16)).astype(np.float32) for n in (5, 9, 17)]
    results = asyncio.run(attend_many(batch))
    print("ragged batch:", [r.values.shape for r in results])


if __name__ == "__main__":
    main()

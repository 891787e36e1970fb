"""Train a 2-layer GAT in PyG, serve it with ruvector in a process that never imports torch.

1. Train (this process, torch + PyG): GATConv(34 → 8 heads × 8) → ELU → GATConv(64 → 4
   classes) on Zachary's karate club, the graph that ships with PyG (no download).
2. Convert each layer: ``GraphAttention(...)`` configured as the module, then
   ``set_weights(model.state_dict(), prefix="conv1.")``; write it with ``layer.save(path)``
   (safetensors: weights plus the layer's configuration, no pickle).
3. Serve in a fresh Python process that imports no torch: ``ruvector.load`` both files, run
   x → conv1 → ELU → conv2 and time it.
4. Print both sets of predictions (class per node), the largest logit difference and the time
   per call of each.

    pip install "ruvector-latent[io,torch]"
    python examples/serve_pyg_model.py [--epochs 60]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import ruvector as rv

HEADS, HIDDEN = 8, 8
CALLS = 200  # timed calls of each forward


def elu(x: np.ndarray) -> np.ndarray:
    """torch.nn.functional.elu (alpha 1) in float32."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(np.float32)


def per_call_us(forward, calls: int = CALLS) -> float:
    forward()  # warm up
    start = time.perf_counter()
    for _ in range(calls):
        forward()
    return (time.perf_counter() - start) / calls * 1e6


def serve(folder: pathlib.Path) -> None:
    """The serving process: numpy and ruvector only."""
    conv1, conv2 = rv.load(folder / "conv1.safetensors"), rv.load(folder / "conv2.safetensors")
    assert isinstance(conv1, rv.GraphAttention) and isinstance(conv2, rv.GraphAttention)
    x = np.load(folder / "x.npy", allow_pickle=False)
    edge_index = np.load(folder / "edge_index.npy", allow_pickle=False)
    graph = rv.GraphStructure.from_edge_index(edge_index, num_nodes=len(x))  # validated once, reused

    def forward() -> np.ndarray:
        hidden = elu(conv1.compute(x, graph, need_weights=False).values)
        return conv2.compute(hidden, graph, need_weights=False).values

    logits = forward()
    np.save(folder / "ruvector_logits.npy", logits, allow_pickle=False)
    print(f"serving process: loaded {conv1!r} and {conv2!r}; torch imported: {'torch' in sys.modules}")
    print(f"ruvector predictions: {''.join(map(str, logits.argmax(axis=1)))}")
    print(f"ruvector: {per_call_us(forward):8.1f} µs per call (2 layers + ELU, 34 nodes)")
    assert "torch" not in sys.modules, "the serving process must not import torch"


def train_and_save(folder: pathlib.Path, epochs: int) -> None:
    import torch
    import torch.nn.functional as F
    from torch_geometric.datasets import KarateClub
    from torch_geometric.nn import GATConv

    class GAT(torch.nn.Module):
        def __init__(self, features: int, classes: int) -> None:
            super().__init__()
            self.conv1 = GATConv(features, HIDDEN, heads=HEADS, dropout=0.6)
            self.conv2 = GATConv(HEADS * HIDDEN, classes, heads=1, dropout=0.6)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            x = F.dropout(x, p=0.6, training=self.training)
            x = F.elu(self.conv1(x, edge_index))
            x = F.dropout(x, p=0.6, training=self.training)
            return self.conv2(x, edge_index)

    torch.manual_seed(0)
    data = KarateClub()[0]  # 34 nodes, 156 directed edges, 4 communities, one labelled node each
    classes = int(data.y.max()) + 1
    model = GAT(data.num_features, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data.x, data.edge_index)[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(data.x, data.edge_index).numpy()
        pyg_us = per_call_us(lambda: model(data.x, data.edge_index))
    accuracy = float((logits.argmax(axis=1) == data.y.numpy()).mean())
    print(f"trained {epochs} epochs in PyG: final loss {loss.item():.3f}, accuracy on all 34 nodes {accuracy:.2f}")

    # Each PyG layer → a ruvector layer configured as the module, weights from the model's
    # state_dict by prefix, then a safetensors file.
    state = model.state_dict()
    conv1 = rv.GraphAttention({"num_heads": HEADS, "head_dim": HIDDEN}, in_features=data.num_features)
    conv1.set_weights(state, prefix="conv1.")
    conv2 = rv.GraphAttention({"num_heads": 1, "head_dim": classes}, in_features=HEADS * HIDDEN)
    conv2.set_weights(state, prefix="conv2.")
    conv1.save(folder / "conv1.safetensors")
    conv2.save(folder / "conv2.safetensors")
    np.save(folder / "x.npy", data.x.numpy(), allow_pickle=False)
    np.save(folder / "edge_index.npy", data.edge_index.numpy(), allow_pickle=False)
    np.save(folder / "pyg_logits.npy", logits, allow_pickle=False)
    print(f"PyG predictions:      {''.join(map(str, logits.argmax(axis=1)))}")
    print(f"PyG (eval, no_grad): {pyg_us:8.1f} µs per call (2 layers + ELU, 34 nodes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--serve", type=pathlib.Path, help=argparse.SUPPRESS)  # the serving process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    print(f"ruvector {rv.__version__} | SIMD backend: {rv.get_simd_backend()} | threads: {rv.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        train_and_save(folder, args.epochs)
        sizes = ", ".join(f"{p.name} {p.stat().st_size} bytes" for p in sorted(folder.glob("*.safetensors")))
        print(f"saved {sizes}")
        subprocess.run([sys.executable, __file__, "--serve", str(folder)], check=True)  # a fresh process
        pyg = np.load(folder / "pyg_logits.npy")
        served = np.load(folder / "ruvector_logits.npy")
    print(f"largest |logit difference|: {np.abs(pyg - served).max():.3g}")
    print(f"predictions equal: {bool((pyg.argmax(axis=1) == served.argmax(axis=1)).all())}")


if __name__ == "__main__":
    main()

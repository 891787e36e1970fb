"""The examples run as a user runs them and print what their docstrings promise."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"examples/{name} is not in this copy of the tree")
    # the child finds ruvector where this process did (an installed wheel or a dev build)
    env = dict(os.environ)
    import ruvector

    env["PYTHONPATH"] = os.pathsep.join(
        [str(pathlib.Path(ruvector.__file__).parents[1]), *filter(None, [env.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_serve_pyg_model_matches_pyg_without_torch() -> None:
    pytest.importorskip("torch_geometric.datasets", reason="the example trains in PyG")
    pytest.importorskip("safetensors", reason="the example saves with safetensors (ruvector-latent[io])")
    out = run_example("serve_pyg_model.py", "--epochs", "30")
    assert "torch imported: False" in out, out
    pyg = re.search(r"^PyG predictions:\s+(\d+)$", out, re.M)
    served = re.search(r"^ruvector predictions:\s+(\d+)$", out, re.M)
    assert pyg and served, out
    assert len(pyg[1]) == 34 and served[1] == pyg[1], out
    difference = re.search(r"^largest \|logit difference\|: (\S+)$", out, re.M)
    assert difference and float(difference[1]) <= 1e-4, out
    assert "predictions equal: True" in out, out
    assert re.search(r"^ruvector:\s+[\d.]+ µs per call", out, re.M) and re.search(r"^PyG .*µs per call", out, re.M), out

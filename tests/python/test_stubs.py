"""The hand-kept stubs (ruvector/_native.pyi) match the native module, checked by mypy.stubtest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy")


def test_native_stubs_match_the_module():
    allowlist = os.path.join(os.path.dirname(__file__), "stubtest_allowlist.txt")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ruvector._native", "--allowlist", allowlist],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_native_name_is_in_the_stub():
    # the allowlist excuses metaclass differences of the classes; this makes sure none is missing
    import ast

    import ruvector._native as native

    stub = os.path.join(os.path.dirname(native.__file__), "_native.pyi")
    if not os.path.exists(stub):
        import ruvector

        stub = os.path.join(os.path.dirname(ruvector.__file__), "_native.pyi")
    with open(stub, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    runtime = {name for name in dir(native) if not name.startswith("__")}
    assert runtime - defined == set()

"""The front door stays true: the README's Python blocks run, the docs' blocks marked
``<!-- runnable -->`` run, the README's test command is the one .ci/run runs, and no page refers
to a document outside the repository.

Where the tests run from a copy that lacks a file (the sdist has no .ci/; the wheel tests copy
only what [tool.cibuildwheel] test-sources lists) the tests that need it skip."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```", re.S | re.M)
# Pages whose examples need these skip without them. They are imported the way the other tests
# import them (pytest.importorskip, which keeps their own import-time warnings out of the run).
OPTIONAL = {"torch": "torch", "torch_geometric": "torch_geometric.nn", "dask": "dask.distributed"}


def read(path: pathlib.Path) -> str:
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not in this copy of the tree")
    return path.read_text(encoding="utf-8")


def run_blocks(blocks: list[str], source: str) -> None:
    """Run the blocks in order in one namespace, as a reader pasting them one after another."""
    for name, module in OPTIONAL.items():
        if any(name in block for block in blocks):
            pytest.importorskip(module, reason=f"{source} needs {name}")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{source} (block {i + 1})", "exec"), namespace)
        except ModuleNotFoundError as e:
            if e.name in OPTIONAL:
                pytest.skip(f"{source} needs {e.name}")
            raise


def test_readme_python_blocks_run() -> None:
    blocks = FENCE.findall(read(ROOT / "README.md"))
    assert len(blocks) >= 2
    run_blocks(blocks, "README.md")


def runnable_pages() -> list[pathlib.Path]:
    return sorted(p for p in DOCS.rglob("*.md") if RUNNABLE.search(p.read_text(encoding="utf-8")))  # none without docs/


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_runnable_blocks_run(page: pathlib.Path) -> None:
    run_blocks(RUNNABLE.findall(page.read_text(encoding="utf-8")), str(page.relative_to(ROOT)))


def test_readme_test_command_is_the_ci_command() -> None:
    readme = read(ROOT / "README.md")
    line = next(x for x in readme.splitlines() if '".[test,torch]"' in x)
    steps = [step.strip() for step in line.split("&&")][1:]  # after activating the venv
    ci = [x.strip() for x in read(ROOT / ".ci" / "run").splitlines()]
    assert [step for step in steps if step not in ci] == []
    assert [s.split()[:3] for s in steps] == [
        ["python", "-m", "pip"],
        ["python", "-m", "pytest"],
        ["ctest", "--test-dir", "build/py"],
    ]


def test_readme_is_a_front_door() -> None:
    assert len(read(ROOT / "README.md").splitlines()) <= 200


def test_pages_refer_to_nothing_outside_the_repository() -> None:
    pages = [p for p in (ROOT / "README.md", ROOT / "mkdocs.yml", *DOCS.rglob("*.md")) if p.exists()]
    outside = re.compile(r"SPEC\.md|\bSPEC\b|\.\./shared|/work/")
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}" for p in pages for m in outside.finditer(p.read_text(encoding="utf-8"))
    ]
    assert found == []

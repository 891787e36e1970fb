"""A griffe extension for the API reference (mkdocs.yml). pybind11 puts each native function's
signature as the first line(s) of its docstring, ``compute(self: object, ...) -> object``; read
as Markdown, ``__init__`` there turns bold and the line wraps as prose. This shows those lines as
a Python code block instead. Presentation only: the docstrings themselves are unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SIGNATURE = re.compile(r"^(?:\d+\. )?[A-Za-z_]\w*\(.*\)(?: -> .+)?$")


def _fence_signatures(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    block: list[str] = []
    for line in lines:
        if SIGNATURE.match(line.strip()):
            block.append(re.sub(r"^\d+\. ", "", line.strip()))
            continue
        if block:
            out += ["```python", *block, "```"]
            block = []
        out.append(line)
    if block:
        out += ["```python", *block, "```"]
    return "\n".join(out)


class PybindSignatures(griffe.Extension):
    def on_instance(self, **kwargs: Any) -> None:
        docstring = getattr(kwargs.get("obj"), "docstring", None)
        if docstring is not None and docstring.value:
            docstring.value = _fence_signatures(docstring.value)

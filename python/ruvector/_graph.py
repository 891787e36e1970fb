"""graph attention: Python layer (async/batch). Placeholder until its issue lands."""

from __future__ import annotations

__all__: list[str] = []

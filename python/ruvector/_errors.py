"""The exception hierarchy of docs/contract.md §6; the native module raises these classes."""

from __future__ import annotations

from typing import Any


class RuVectorError(Exception):
    """Base class of every error ruvector raises on purpose."""


class InvalidInputError(RuVectorError, ValueError):
    """An argument has the wrong type, shape, value or range."""


class DimensionMismatchError(InvalidInputError):
    """Two sizes that must agree do not; ``expected`` and ``actual`` hold them."""

    def __init__(self, message: str = "", expected: Any = None, actual: Any = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.expected, self.actual))


class InvalidConfigError(RuVectorError, ValueError):
    """A configuration value is out of range or unknown."""


class ComputationError(RuVectorError, RuntimeError):
    """The computation itself failed."""


__all__ = [
    "ComputationError",
    "DimensionMismatchError",
    "InvalidConfigError",
    "InvalidInputError",
    "RuVectorError",
]

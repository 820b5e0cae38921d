"""Argument checks of the public API, one rule everywhere.

A value of the wrong kind (a string where a count is wanted, a float where
an integer is) raises TypeError; a value of the right kind that is out of
range (a negative size, an empty name) raises ValueError.  Both messages
start with ``where``, the parameter as the caller wrote it
(``"CursorsService(max_cursors=...)"``), and show what was given.
``bool`` is not a number here (``True`` is no count).
"""
from __future__ import annotations

from typing import Any

__all__ = ["count", "seconds", "text"]


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {value!r:.80}"


def count(where: str, value: Any, minimum: int = 0) -> int:
    """``value``, an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} is an integer >= {minimum}, {_got(value)}")
    if value < minimum:
        raise ValueError(f"{where} is an integer >= {minimum}, got {value!r}")
    return value


def seconds(where: str, value: Any, minimum: float = 0.0, *, above: bool = False) -> float:
    """``value`` as a float: at least ``minimum`` (more than it with ``above``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} is seconds {'>' if above else '>='} {minimum:g}, {_got(value)}")
    if value < minimum or (above and value == minimum) or value != value:  # NaN
        raise ValueError(f"{where} is seconds {'>' if above else '>='} {minimum:g}, got {value!r}")
    return float(value)


def text(where: str, value: Any, min_length: int = 1, what: str = "a string") -> str:
    """``value``, a string of at least ``min_length`` characters."""
    if not isinstance(value, str):
        raise TypeError(f"{where} is {what}, got {type(value).__name__}")
    if len(value) < min_length:
        raise ValueError(f"{where} is {what} of at least {min_length} character"
                         f"{'s' if min_length != 1 else ''}, got {len(value)}")
    return value

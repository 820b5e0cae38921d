"""The filter language of :class:`~snorky_sync.services.datasync.dealers.FilterDealer`.

A filter is a JSON list in prefix notation::

    ["==", "color", "blue"]                 color is "blue"
    ["<", "age", 21]                        also "<=", ">", ">="
    ["and", f1, f2, ...]                    every filter matches (none given: true)
    ["or", f1, f2, ...]                     some filter matches (none given: false)
    ["not", f]                              f does not match
    ["==", "player.color", "blue"]          data["player"]["color"] is "blue"

Comparisons follow JSON, not Python: ``true`` never equals ``1``; only two
numbers or two strings are ordered.  A comparison whose field is missing
(or whose path crosses a value that is not an object) or whose operands
cannot be ordered is false; it never raises.  ``not`` negates that result,
so ``["not", ["==", "x", 1]]`` matches data without ``x``.

:func:`compile_filter` validates a filter once and returns a predicate;
:exc:`InvalidFilter` says what is wrong with a malformed one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "InvalidFilter", "Predicate", "compile_filter", "validate_filter",
    "filter_matches", "json_equal", "get_field", "orderable_types",
    "COMPARISON_OPERATORS", "LOGICAL_OPERATORS", "MAX_DEPTH",
]

Predicate = Callable[[Any], bool]

COMPARISON_OPERATORS = ("==", "<", "<=", ">", ">=")
LOGICAL_OPERATORS = ("and", "or", "not")
MAX_DEPTH = 64
"""Deepest nesting of and/or/not accepted (a bound on recursion)."""

_MISSING = object()


class InvalidFilter(ValueError):
    """A filter that does not follow the grammar; the text says why."""


def compile_filter(filter: Any) -> Predicate:
    """Validate ``filter`` and return a predicate ``data -> bool``.

    Raises :exc:`InvalidFilter` for a malformed filter.  The predicate never
    raises for JSON data.
    """
    return _compile(filter, 0)


def validate_filter(filter: Any) -> None:
    """Raise :exc:`InvalidFilter` unless ``filter`` is well formed."""
    _compile(filter, 0)


def filter_matches(data: Any, filter: Any) -> bool:
    """Does ``data`` match ``filter``?  (Compiles each call; dealers keep the predicate.)"""
    return _compile(filter, 0)(data)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _compile(f: Any, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(f, list) or not f:
        raise InvalidFilter(f"a filter is a non-empty list [operator, ...], got {_show(f)}")
    op = f[0]
    if not isinstance(op, str):
        raise InvalidFilter(f"operator must be a string, got {_show(op)}")
    if op in COMPARISON_OPERATORS:
        if len(f) != 3:
            raise InvalidFilter(f"{op!r} takes a field and a value: [{op!r}, field, value]")
        return _comparison(op, _parse_path(f[1]), f[2])
    if op == "not":
        if len(f) != 2:
            raise InvalidFilter("'not' takes exactly one filter: ['not', filter]")
        inner = _compile(f[1], depth + 1)
        return lambda data: not inner(data)
    if op == "and" or op == "or":
        parts = tuple(_compile(sub, depth + 1) for sub in f[1:])
        if op == "and":
            return lambda data: all(p(data) for p in parts)
        return lambda data: any(p(data) for p in parts)
    raise InvalidFilter(f"unknown operator {_show(op)}")


def _parse_path(field: Any) -> tuple[str, ...]:
    if not isinstance(field, str) or not field:
        raise InvalidFilter(f"field must be a non-empty string, got {_show(field)}")
    path = tuple(field.split("."))
    if "" in path:
        raise InvalidFilter(f"field {field!r} has an empty path segment")
    return path


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    """``data[p0][p1]...``, or ``_MISSING`` when any step is absent or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return _MISSING
        data = data.get(key, _MISSING)
        if data is _MISSING:
            return _MISSING
    return data


def get_field(data: Any, name: str) -> Any:
    """``data`` followed along the dotted path ``name`` (``"player.color"`` ->
    ``data["player"]["color"]``); KeyError when a step is missing."""
    value = _lookup(data, _parse_path(name))
    if value is _MISSING:
        raise KeyError(name)
    return value


def orderable_types(a: Any, b: Any) -> bool:
    """Whether ``a < b`` is defined in the filter language: two numbers or two strings."""
    return _orderable(a, b)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _orderable(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return isinstance(b, str)
    return _is_number(a) and _is_number(b)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: like ``==`` but booleans are not numbers."""
    if _is_number(a):  # bools are not numbers, so true != 1
        return _is_number(b) and a == b
    if isinstance(a, (list, tuple)):
        return (isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(json_equal(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(json_equal(v, b[k]) for k, v in a.items()))
    if isinstance(b, (list, tuple, dict)) or _is_number(b):
        return False
    return bool(a == b)  # str, bool or None


def _comparison(op: str, path: tuple[str, ...], value: Any) -> Predicate:
    if op == "==":
        def eq(data: Any) -> bool:
            found = _lookup(data, path)
            if found is _MISSING:
                return False
            try:
                return json_equal(found, value)
            except RecursionError:  # absurdly deep data: treat as different
                return False
        return eq

    if not (isinstance(value, str) or _is_number(value)):
        return lambda data: False  # nothing is ordered against this value

    cmp: Predicate
    if op == "<":
        def cmp(found: Any) -> bool: return bool(found < value)
    elif op == "<=":
        def cmp(found: Any) -> bool: return bool(found <= value)
    elif op == ">":
        def cmp(found: Any) -> bool: return bool(found > value)
    else:
        def cmp(found: Any) -> bool: return bool(found >= value)

    def ordered(data: Any) -> bool:
        found = _lookup(data, path)
        return found is not _MISSING and _orderable(found, value) and cmp(found)
    return ordered

"""Snorky 0.1's ``snorky.types``: small helpers its services were written with.

Python 3 only here: ``PY2`` is False and the dictionary helpers return views.
:class:`MultiDict` (a dict of sets) is what 0.1's services kept their
indexes in; custom services ported from 0.1 may keep using it.
"""
from __future__ import annotations

import sys
from collections.abc import ItemsView, KeysView, ValuesView
from numbers import Number  # noqa: F401  (0.1 re-exported it from here)
from typing import Any, TypeVar

__all__ = ["PY2", "PY3", "StringTypes", "ustr", "items", "keys", "values", "is_string",
           "with_metaclass", "MultiDict", "Number"]

PY2 = sys.version_info < (3, 0)
PY3 = not PY2
StringTypes = (str,)
ustr = str

_K = TypeVar("_K")
_V = TypeVar("_V")


def items(d: dict[_K, _V]) -> ItemsView[_K, _V]:
    """The items of a dictionary (a view)."""
    return d.items()


def keys(d: dict[_K, _V]) -> KeysView[_K]:
    """The keys of a dictionary (a view)."""
    return d.keys()


def values(d: dict[_K, _V]) -> ValuesView[_V]:
    """The values of a dictionary (a view)."""
    return d.values()


def is_string(thing: Any) -> bool:
    """Whether ``thing`` is a string."""
    return isinstance(thing, StringTypes)


def with_metaclass(meta: type, *bases: type) -> type:
    """A base class created by ``meta``: ``class X(with_metaclass(Meta, Base))``."""
    base: type = meta("temporary_class", bases or (object,), {})
    return base


class MultiDict(dict[Any, set[Any]]):
    """A dictionary of sets: ``add``/``remove`` one value under a key."""

    def add(self, key: Any, value: Any) -> None:
        """Add ``value`` to the set under ``key``."""
        self.setdefault(key, set()).add(value)

    def remove(self, key: Any, value: Any) -> None:
        """Remove ``value`` from the set under ``key`` (KeyError if absent);
        the key goes when its set is empty."""
        values = self[key]
        values.remove(value)
        if not values:
            del self[key]

    def get_set(self, key: Any) -> set[Any]:
        """The set under ``key`` (an empty set if none)."""
        return self.get(key, set())

    def in_set(self, key: Any, value: Any) -> bool:
        """Whether ``value`` is in the set under ``key``."""
        values = self.get(key)
        return values is not None and value in values

    def clear_set(self, key: Any) -> None:
        """Forget every value under ``key``."""
        self.pop(key, None)

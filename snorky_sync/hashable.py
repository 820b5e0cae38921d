"""Hashable JSON values (Snorky 0.1's ``snorky.hashable``).

0.1 decoded every incoming message with :func:`make_hashable`, so a service
could use any part of it (a channel that is a list or an object) as a dict
key or set member.  snorky_sync does the same for services that ask for it
(:attr:`snorky_sync.services.base.Service.hashable_messages`, on by default
for services written by users; the built-in services key by canonical JSON
instead, see :func:`snorky_sync.wire.json_key`).
"""
from __future__ import annotations

from typing import Any

from .wire import MAX_DEPTH

__all__ = ["HashableList", "HashableDict", "make_hashable", "NestingTooDeep"]

_CONTAINERS = (list, dict)


class NestingTooDeep(ValueError):
    """A value nested deeper than :func:`make_hashable` was allowed to go."""


class HashableList(list[Any]):
    """A list that can be a dict key.  Its hash is computed once: don't mutate it."""

    __slots__ = ("_hash",)  # unset until the first hash: no __init__ to run per list
    _hash: int

    def __hash__(self) -> int:  # type: ignore[override]  # lists are unhashable; these are
        try:
            return self._hash
        except AttributeError:
            h = self._hash = hash(tuple(self))
            return h


class HashableDict(dict[Any, Any]):
    """A dict that can be a dict key.  Its hash is computed once: don't mutate it."""

    __slots__ = ("_hash",)
    _hash: int

    def __hash__(self) -> int:  # type: ignore[override]  # dicts are unhashable; these are
        try:
            return self._hash
        except AttributeError:
            h = self._hash = hash(frozenset(self.items()))
            return h


def make_hashable(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` with every list a :class:`HashableList` and every dict a
    :class:`HashableDict`, recursively; other values unchanged.

    Raises :class:`NestingTooDeep` (a ValueError) when lists and dicts nest
    more than ``max_depth`` levels (``[]`` is one): the recursion is bounded
    by it, so client data cannot exhaust the stack (Snorky 0.1 recursed
    without limit and failed with RecursionError at ~500 levels).
    """
    if isinstance(value, _CONTAINERS):
        return _convert(value, max_depth)
    return value


def _convert(value: list[Any] | dict[Any, Any], depth: int) -> Any:
    # a copy of the container, then its containers replaced: the cheapest way
    # measured (~0.3 µs per container, 5 ms for 64 KiB of [[],[],...]; 0.1's
    # generator-fed __init__ took 13 ms)
    if depth <= 0:
        raise NestingTooDeep("lists and objects nested too deep")
    depth -= 1
    if isinstance(value, list):
        out: Any = HashableList(value)
        i = 0
        for v in value:
            if isinstance(v, _CONTAINERS):
                out[i] = _convert(v, depth)
            i += 1
        return out
    out = HashableDict(value)
    for k, v in value.items():
        if isinstance(v, _CONTAINERS):
            out[k] = _convert(v, depth)
    return out

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

__all__ = ["HashableList", "HashableDict", "make_hashable"]


class HashableList(list):
    """A list that can be a dict key.  Its hash is computed once: don't mutate it."""

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        list.__init__(self, *args, **kwargs)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]  # lists are unhashable; these are
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash


class HashableDict(dict):
    """A dict that can be a dict key.  Its hash is computed once: don't mutate it."""

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]  # dicts are unhashable; these are
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash


def make_hashable(value: Any) -> Any:
    """``value`` with every list a :class:`HashableList` and every dict a
    :class:`HashableDict`, recursively; other values unchanged."""
    t = type(value)
    if t is dict or isinstance(value, dict):
        return HashableDict((k, make_hashable(v)) for k, v in value.items())
    if t is list or isinstance(value, list):
        return HashableList(make_hashable(v) for v in value)
    return value

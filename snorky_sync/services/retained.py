"""Retained state, bounded and compact: what services keep for a connection.

A name (channel, document, identity key) or a cursor field stays in memory
for as long as the connection holds it, so its cost must be its size, and
its size must be checked before anything built from it is kept:

* :func:`bounded_key` — a channel or document name's key, refused with an
  RPC error when its JSON is larger than the limit (strings are measured in
  UTF-8 bytes, never in characters);
* :func:`compact_key` — a key whose JSON bytes are a copy sized to their
  content: orjson's output keeps a buffer of several KB behind even a short
  text (measured: ~4 KB of RSS for ``{"a":1}``, ~8 KB for 1 KB of JSON), so
  a key kept as orjson returned it costs 4-8 times its size;
* :func:`key_value` — the value to keep and send for a key: the string
  itself, or the canonical JSON as an ``orjson.Fragment`` (sent verbatim),
  never the parsed form (1 KB of ``[[],[],...]`` is ~20 KB of Python lists);
* :func:`bounded_json` — a free-form value (a cursor's position or status)
  kept as its JSON, whose length is its size;
* :func:`key_to_value` / :func:`json_value` — the parsed value again, for
  hooks and attribute access (decoded when asked for, never kept).
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import orjson

from .. import wire
from .base import RPCError

__all__ = ["bounded_key", "compact_key", "key_value", "key_to_value", "key_size", "bounded_json",
           "json_value"]

_Fragment = orjson.Fragment
_dumps = orjson.dumps
_SCALARS = (int, float, bool, type(None))
_TAG = wire.json_key(0)[0]  # type: ignore[index]  # the tag of a non-string key


def _copy(data: bytes) -> bytes:
    return bytes(memoryview(data))  # bytes(b) would return b itself


def compact_key(key: Hashable) -> Hashable:
    """``key`` (a :func:`snorky_sync.wire.json_key` result) holding its own
    right-sized copy of the JSON bytes."""
    if type(key) is str:
        return key
    pair = cast("tuple[str, bytes]", key)
    return (pair[0], _copy(pair[1]))


def key_size(key: Hashable) -> int:
    """Bytes of JSON of a key (a string's UTF-8 bytes, without quotes)."""
    if type(key) is str:
        return len(key.encode("utf-8", "surrogatepass"))
    return len(key[1])  # type: ignore[index]


def bounded_key(value: Any, max_size: int, error: str) -> Hashable:
    """The compact key of ``value``, or ``RPCError(error)`` when its JSON is
    larger than ``max_size`` bytes.  A long string is refused before it is
    encoded; nothing built from a refused value is kept."""
    if type(value) is str:
        # one byte per character at least, four at most: encode only in between
        n = len(value)
        if n > max_size or (n * 4 > max_size
                            and len(value.encode("utf-8", "surrogatepass")) > max_size):
            raise RPCError(error)
        return value
    data = _dumps(value, option=orjson.OPT_SORT_KEYS)
    if len(data) > max_size:
        raise RPCError(error)
    return (_TAG, _copy(data))


def key_value(key: Hashable) -> Any:
    """What to keep (and send) for ``key``'s value: a string as itself,
    anything else as its canonical JSON (an ``orjson.Fragment`` sharing the
    key's bytes, sent verbatim)."""
    if type(key) is str:
        return key
    return _Fragment(key[1])  # type: ignore[index]


def key_to_value(key: Hashable) -> Any:
    """The parsed value of ``key`` (for hooks and the few slow paths that need it)."""
    if type(key) is str:
        return key
    return orjson.loads(key[1])  # type: ignore[index]


def bounded_json(value: Any) -> tuple[Any, bytes]:
    """``(stored, data)``: ``value`` to keep — numbers, booleans, null and
    strings as themselves, lists and objects as their JSON (a Fragment
    sharing ``data``) — and its JSON bytes (right-sized), whose length is its
    size.  Raises TypeError for values that are not JSON."""
    data = _copy(_dumps(value))
    if type(value) in _SCALARS or type(value) is str:
        return value, data
    return _Fragment(data), data


def json_value(stored: Any, data: bytes) -> Any:
    """The parsed value of what :func:`bounded_json` returned."""
    if type(stored) is _Fragment:
        return orjson.loads(data)
    return stored

"""The wire format: JSON envelopes and WebSocket text frames, encoded once.

No I/O here.  Everything a service sends goes through :func:`encode_frame`,
which serializes the envelope with orjson and wraps it in a complete,
unmasked WebSocket text frame.  The resulting ``bytes`` object is what every
recipient's outbound queue holds, so a notification to N clients costs one
encode and N list appends.
"""
from __future__ import annotations

import gc
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

import orjson

__all__ = [
    "DecodeError", "decode", "encode", "encode_envelope", "encode_frame",
    "frame_text", "frame_payload", "json_key", "key_to_bytes", "key_from_bytes",
    "pack_routed", "unpack_routed", "MAX_DEPTH", "too_deep", "may_be_deep", "gc_paused",
]

DecodeError = orjson.JSONDecodeError

_dumps = orjson.dumps
_loads = orjson.loads

#: How deeply a message (an envelope's ``message``) may nest lists and objects.
#: Deeper ones are refused before anything recurses on them: orjson parses up
#: to 1024 levels but serializes only 254, Python recurses ~1000 frames deep,
#: and no real message comes near (serde_json's default limit is 128 too).
MAX_DEPTH = 128


def decode(raw: bytes | str) -> Any:
    """Parse one JSON document (raises :data:`DecodeError`, a ValueError)."""
    return _loads(raw)


_T = TypeVar("_T")


def gc_paused(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` with the cyclic garbage collector paused.

    Decoding a big message allocates one container per ``[]``/``{}`` (21,000
    for 64 KiB of ``[[],[],...]``), which triggers collections that traverse
    the whole heap for objects that cannot be cycles (a JSON tree): measured
    in a server process, 64 KiB of them took 16-23 ms (median; 80-100 ms
    p90) to decode and make hashable, 5-9 ms (15 ms p90) with the GC paused.
    For code that never switches greenlets (nothing else runs while it is off).
    """
    if not gc.isenabled():  # the application turned it off: leave it off
        return fn(*args)
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.enable()


def may_be_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Could the JSON text ``raw`` nest more than ``limit`` levels?  Cheap
    (two byte counts, ~0.5 µs per KiB): False proves it does not."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > limit
    return raw.count(b"[") + raw.count(b"{") > limit


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Does the decoded JSON ``value`` nest lists/objects more than ``limit``
    levels deep?  Level by level, no recursion (~1.5 ms for 64 KiB of
    ``[[],[],...]``; ``[]`` is one level)."""
    level = [value] if type(value) is list or type(value) is dict else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [v for node in level for v in (node.values() if type(node) is dict else node)
                 if type(v) is list or type(v) is dict]
    return False


def encode(value: Any) -> bytes:
    """Serialize a JSON value to UTF-8 bytes."""
    return _dumps(value)


def encode_envelope(service: str, message: Any) -> bytes:
    """The envelope ``{"service": ..., "message": ...}`` as JSON bytes."""
    return _dumps({"service": service, "message": message})


def frame_text(payload: bytes) -> bytes:
    """Build a complete server-to-client WebSocket text frame (RFC 6455 §5.2).

    FIN set, opcode 1, no mask, no extensions.  This is the one frame the
    project builds by hand (architecture.md rule 10) so that fan-out writes the same
    bytes to every socket.
    """
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def encode_frame(service: str, message: Any) -> bytes:
    """Envelope + frame in one call: the bytes queued to every recipient."""
    payload = _dumps({"service": service, "message": message})
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    return frame_text(payload)


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame built by :func:`frame_text` (for non-WebSocket clients)."""
    n = frame[1] & 0x7F
    if n < 126:
        return frame[2:]
    if n == 126:
        return frame[4:]
    return frame[10:]


def json_key(value: Any) -> Hashable:
    """A hashable key that compares JSON values by value.

    Strings (the common channel type) are their own key.  Everything else is
    keyed by its canonical JSON text, so ``1`` and ``true`` stay distinct and
    objects compare regardless of key order.
    """
    if type(value) is str:
        return value
    return (_JSON_KEY, _dumps(value, option=orjson.OPT_SORT_KEYS))


_JSON_KEY = "\x00json"


def key_to_bytes(key: Hashable) -> bytes:
    """Serialize a :func:`json_key` result (to route messages between processes)."""
    if type(key) is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    return b"j" + cast("tuple[str, bytes]", key)[1]


def key_from_bytes(data: bytes) -> Hashable:
    """Inverse of :func:`key_to_bytes`."""
    if data[:1] == b"s":
        return data[1:].decode("utf-8", "surrogatepass")
    return (_JSON_KEY, bytes(data[1:]))


def pack_routed(key: Hashable, frame: bytes) -> bytes:
    """``key`` + ``frame`` in one bytes object (length-prefixed key)."""
    kb = key_to_bytes(key)
    return len(kb).to_bytes(4, "big") + kb + frame


def unpack_routed(data: bytes) -> tuple[Hashable, bytes]:
    """Inverse of :func:`pack_routed`: (key, frame)."""
    n = int.from_bytes(data[:4], "big")
    return key_from_bytes(data[4:4 + n]), data[4 + n:]

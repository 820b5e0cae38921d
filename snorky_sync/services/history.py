"""Per-channel history: offsets, an epoch, and the last N messages of a channel.

Used by PubSub (and Chat) when a service is created with ``history_size``.
Every message of a channel gets an ``offset`` (1 for the first, contiguous)
and carries the channel's ``epoch`` (a random string that changes whenever
the channel's history is lost: the process restarted, Redis restarted
without persistence or was flushed, the channel was idle longer than
``ttl``).  A client that knows ``(offset, epoch)`` of the last message it saw
asks for what followed; the answer is every later message, in order, or
"not recoverable" (other epoch, or the history no longer reaches back).

Two stores with one interface:

* :class:`LocalHistory` — in this process (the default, one process).
* :class:`RedisHistory` — in Redis (``SNORKY_REDIS_URL``): offsets are
  assigned by one Lua script that also publishes the message on the
  channel's own topic, so every process with subscribers of the channel
  receives its messages in offset order, and a client that comes back on
  another process recovers from the same history.

A stream keeps at most ``size`` messages and expires ``ttl`` seconds after
its last message (then the next message starts a new epoch).

What a store holds per message is the envelope's JSON text (``bytes``) with
``offset`` and ``epoch`` in it: replaying sends the very bytes that were sent
live.
"""
from __future__ import annotations

import collections
import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any

from .. import wire
from ..brokers.base import channel_topic
from ..metrics import counters

__all__ = ["LocalHistory", "RedisHistory", "LiveGate", "envelope_head", "recoverable_entries"]


def new_epoch() -> str:
    """A fresh epoch: 16 hex characters (safe to splice into JSON)."""
    return os.urandom(8).hex()


def envelope_head(service: str, message: dict) -> bytes:
    """The envelope's JSON without its closing ``}}``: offset and epoch are
    appended after the message's last field (``..., "offset": N, "epoch": E}}``)."""
    raw = wire.encode({"service": service, "message": message})
    return raw[:-2]


def finish_envelope(head: bytes, offset: int, epoch: str) -> bytes:
    return head + b',"offset":%d,"epoch":"%s"}}' % (offset, epoch.encode())


def recoverable_entries(entries: list[tuple[int, bytes]], current: int, epoch: str,
                        since: Any) -> list[tuple[int, bytes]] | None:
    """The entries after ``since`` (``{"offset", "epoch"}``), or None when the
    gap cannot be filled (other epoch, entries gone, offset from the future)."""
    if not isinstance(since, dict):
        return None
    offset, their_epoch = since.get("offset"), since.get("epoch")
    if type(offset) is not int or offset < 0 or their_epoch != epoch or offset > current:
        return None
    if offset == current:
        return []
    if not entries or entries[0][0] > offset + 1:
        return None
    return [e for e in entries if e[0] > offset]


class _Stream:
    __slots__ = ("epoch", "offset", "entries", "touched")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=size)
        self.touched = time.monotonic()


class LocalHistory:
    """Streams in this process's memory (callers hold the service lock)."""

    distributed = False

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self.streams: dict[Any, _Stream] = {}
        self._sweep_at = time.monotonic() + ttl

    def _stream(self, key, create: bool) -> _Stream | None:
        now = time.monotonic()
        if now >= self._sweep_at:  # forget idle streams (bounded memory)
            self._sweep_at = now + self.ttl
            for k in [k for k, s in self.streams.items() if now - s.touched > self.ttl]:
                del self.streams[k]
        stream = self.streams.get(key)
        if stream is not None and now - stream.touched > self.ttl:
            del self.streams[key]
            stream = None
        if stream is None and create:
            stream = self.streams[key] = _Stream(self.size)
        return stream

    def _stream_now(self, key) -> _Stream:
        """The live stream of ``key``, created if need be."""
        stream = self._stream(key, True)
        assert stream is not None  # created above
        return stream

    def append(self, key, head: bytes) -> tuple[int, str, bytes]:
        """Give the next message of ``key`` its offset; returns (offset, epoch, envelope)."""
        stream = self._stream_now(key)
        stream.offset += 1
        stream.touched = time.monotonic()
        env = finish_envelope(head, stream.offset, stream.epoch)
        stream.entries.append((stream.offset, env))
        return stream.offset, stream.epoch, env

    def read(self, key) -> tuple[int, str, list[tuple[int, bytes]]]:
        """(current offset, epoch, entries) of ``key``; a channel without history
        gets its epoch now (so a later ``since`` with it stays recoverable)."""
        stream = self._stream_now(key)
        return stream.offset, stream.epoch, list(stream.entries)


# KEYS: entries list, meta hash
# ARGV: epoch candidate, size, ttl ms, envelope head, redis channel, routed prefix
_APPEND = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
local env = ARGV[4] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}}'
redis.call('RPUSH', KEYS[1], offset .. ' ' .. env)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. offset .. ' ' .. env)
return {offset, epoch}
"""

# KEYS: entries list, meta hash; ARGV: epoch candidate, ttl ms
_READ = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local offset = redis.call('HGET', KEYS[2], 'o')
return {epoch, offset, redis.call('LRANGE', KEYS[1], 0, -1)}
"""


class RedisHistory:
    """Streams in Redis, shared by every process of the service.

    Messages are published by the append script itself on the channel's
    topic of the routed ``family`` (:func:`~snorky_sync.brokers.base.channel_topic`,
    with this process's origin), so every process that wants the channel —
    this one included, the family is routed with echo — receives them in
    offset order.  Raises :class:`~snorky_sync.brokers.base.BrokerUnavailable`
    when Redis cannot be reached.
    """

    distributed = True

    def __init__(self, broker, namespace: str, family: str, size: int, ttl: float) -> None:
        from ..brokers.redis import PREFIX

        self.broker = broker
        self.size = size
        self.ttl = ttl
        self.ttl_ms = max(1, int(ttl * 1000))
        self.namespace = f"{PREFIX}hist:{namespace}:"
        self.prefix = PREFIX
        self.family = family
        client = broker.client
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    def _keys(self, key_bytes: bytes) -> list[str]:
        digest = hashlib.sha1(key_bytes).hexdigest()
        return [self.namespace + digest, self.namespace + digest + ":m"]

    def _call(self, script, keys, args):
        from ..brokers.base import BrokerUnavailable

        try:
            return script(keys=keys, args=args)
        except self.broker._redis_mod.RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def append(self, key, head: bytes) -> tuple[int, str]:
        """Append and publish (to every process, in offset order); returns (offset, epoch).

        What is published is ``wire.pack_routed(key, b"<offset> " + envelope)``
        behind this process's origin, as the broker publishes."""
        routed = wire.pack_routed(key, b"")
        kb = routed[4:]
        channel = self.prefix + channel_topic(self.family, kb)
        offset, epoch = self._call(self._append, self._keys(kb),
                                   [new_epoch(), self.size, self.ttl_ms, head, channel,
                                    self.broker.origin + routed])
        return int(offset), _text(epoch)

    def read(self, key) -> tuple[int, str, list[tuple[int, bytes]]]:
        epoch, offset, raw = self._call(self._read, self._keys(wire.key_to_bytes(key)),
                                        [new_epoch(), self.ttl_ms])
        return int(offset), _text(epoch), [_numbered(item) for item in raw]

    @staticmethod
    def unpack(data: bytes) -> tuple[Any, int, bytes]:
        """A published message: (channel key, offset, envelope)."""
        key, rest = wire.unpack_routed(data)
        offset, env = _numbered(rest)
        return key, offset, env


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _numbered(item: bytes) -> tuple[int, bytes]:
    """``b"<offset> <envelope>"`` (how the scripts store and publish) -> (offset, envelope)."""
    num, _, env = bytes(item).partition(b" ")
    return int(num), env


def replay(client, since: Any, current: int, epoch: str, entries: list[tuple[int, bytes]],
           counter: str) -> dict:
    """The position part of a subscribe/join answer: ``{"offset", "epoch"}``, and
    with ``since`` the entries after it sent to ``client`` first and
    ``"recovered"`` (counted as ``<counter>_recoveries`` / ``_recoveries_failed``)."""
    answer: dict[str, Any] = {"offset": current, "epoch": epoch}
    if since is None:
        return answer
    missed = recoverable_entries(entries, current, epoch, since)
    answer["recovered"] = missed is not None
    counters[f"{counter}_recoveries" if missed is not None else f"{counter}_recoveries_failed"] += 1
    for frame in frames(missed or ()):
        client.send_frame(frame)
    return answer


def send_newer(client, held: list, current: int, gate: LiveGate, key) -> int:
    """After a recovering read that reached offset ``current``: send the live
    messages kept meanwhile that are newer, and let the client catch up from
    the last one; returns the client's offset."""
    last = current
    for offset, frame in held:
        if offset > last:
            client.send_frame(frame)
            last = offset
    gate.catch_up(key, client, last)
    return last


def frames(entries: Iterable[tuple[int, bytes]]) -> list[bytes]:
    """WebSocket frames of stored envelopes."""
    return [wire.frame_text(env) for _, env in entries]


class LiveGate:
    """Keeps live history messages from clients that are recovering a channel
    (Redis mode, where a history read and live delivery are not atomic).

    ``hold(key, client)`` before reading the history: live messages for it
    are kept aside; ``release(key, client)`` after: the kept ones (to send
    those newer than what the read had); ``catch_up(key, client, last)``:
    until a message newer than ``last`` arrives, older ones (in flight from
    Redis, already in the read) are not sent to it.  Callers hold the
    service lock.  When nobody is recovering, :meth:`recipients` costs one
    dict lookup.
    """

    __slots__ = ("holding", "waiting")

    def __init__(self) -> None:
        self.holding: dict[Any, dict] = {}   # key -> {client: [(offset, frame)]}
        self.waiting: dict[Any, dict] = {}   # key -> {client: last offset it got}

    def hold(self, key, client) -> None:
        self.holding.setdefault(key, {})[client] = []

    def is_holding(self, key, client) -> bool:
        return client in self.holding.get(key, ())

    def release(self, key, client) -> list | None:
        held = self.holding.get(key)
        if held is None or client not in held:
            return None
        pending = held.pop(client)
        if not held:
            del self.holding[key]
        return pending

    def catch_up(self, key, client, last: int) -> None:
        self.waiting.setdefault(key, {})[client] = last

    def forget(self, key, client) -> None:
        self.release(key, client)
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting.pop(client, None)
            if not waiting:
                del self.waiting[key]

    def forget_client(self, client) -> None:
        for key in [k for k, h in self.holding.items() if client in h]:
            self.release(key, client)
        for key in [k for k, w in self.waiting.items() if client in w]:
            self.forget(key, client)

    def recipients(self, key, offset: int, frame: bytes, clients):
        """The clients a live message goes to now (``clients`` minus those
        holding — it is kept for them — and those still catching up)."""
        held = self.holding.get(key)
        waiting = self.waiting.get(key)
        if not held and not waiting:
            return clients
        skip = set()
        if held:
            for client, pending in held.items():
                pending.append((offset, frame))
                skip.add(client)
        if waiting:
            for client, last in list(waiting.items()):
                if offset > last:
                    del waiting[client]
                else:
                    skip.add(client)
            if not waiting:
                del self.waiting[key]
        return [c for c in clients if c not in skip]

"""History stores: where a channel's offsets, epoch and last messages are kept.

A store numbers the messages of each channel (``offset`` 1, 2, 3, ...,
contiguous) within an ``epoch`` (a random string that changes whenever the
channel's history is lost: the process restarted, Redis restarted without
persistence or was flushed, the channel was idle longer than ``ttl``), and
keeps the last ``size`` of them for ``ttl`` seconds after the channel's last
message.  What it keeps per message is the envelope's JSON text with
``offset`` and ``epoch`` spliced in (:func:`finish_envelope`), so a replay
sends the very bytes that were sent live.

Two stores with the interface of :class:`HistoryStore`, one per kind of
broker (:meth:`~.base.Broker.history_store`):

* :class:`LocalHistory` — in this process's memory (the in-process broker).
* :class:`~.redis_history.RedisHistory` — in Redis, shared by every process;
  its ``append`` also publishes the message, in offset order, to every
  process that wants the channel.

What a service does with a store (replay, holding live messages while a
client recovers) is :class:`snorky_sync.services.history.ChannelHistory`.
"""
from __future__ import annotations

import collections
import os
import time
from collections.abc import Hashable
from contextvars import ContextVar
from typing import Protocol

__all__ = ["HistoryStore", "LocalHistory", "new_epoch", "finish_envelope", "IdempotentAppend",
           "idempotent_append", "AlreadyAnswered"]

Entries = list[tuple[int, bytes]]  # (offset, envelope), oldest first


def new_epoch() -> str:
    """A fresh epoch: 16 hex characters (safe to splice into JSON)."""
    return os.urandom(8).hex()


def finish_envelope(head: bytes, offset: int, epoch: str) -> bytes:
    """The envelope whose JSON without its closing ``}}`` is ``head``, with
    ``"offset"`` and ``"epoch"`` after its message's last field."""
    return head + b',"offset":%d,"epoch":"%s"}}' % (offset, epoch.encode())


class IdempotentAppend:
    """An ``idempotencyKey``'s claim in Redis (:mod:`snorky_sync.services.idempotency`)
    that the next append of its channel records its answer under, in the
    same Lua script as it numbers and publishes the message
    (:class:`~.redis_history.RedisHistory`): a worker killed after publishing
    leaves the answer recorded, and a retry gets it instead of publishing
    again.  ``key``: the claim's Redis key; ``place``: the channel's topic
    (where the claim was placed, on the channel's shard); ``window_ms``: how
    long the answer is kept; ``offset_answer``: the answer is the message's
    ``{"offset", "epoch"}`` (a publish with ``excludeSender``), else null;
    ``recorded``: set once an append recorded it."""

    __slots__ = ("key", "place", "window_ms", "offset_answer", "recorded")

    def __init__(self, key: str, place: str, window_ms: int) -> None:
        self.key = key
        self.place = place
        self.window_ms = window_ms
        self.offset_answer = False
        self.recorded = False


#: the claim of the call running in this greenlet (set by the idempotency
#: store around the call, read by the store's append); None: none
idempotent_append: ContextVar[IdempotentAppend | None] = ContextVar("snorky_idempotent_append",
                                                                     default=None)


class AlreadyAnswered(Exception):
    """An append refused: its claim already holds an answer (a call that
    outlived its claim while another ran).  ``answer``: as recorded
    (``b"a" + JSON``); nothing was appended nor published."""

    def __init__(self, answer: bytes) -> None:
        super().__init__("already answered")
        self.answer = answer


class HistoryStore(Protocol):
    """What a channel history needs of a store (``key``: a channel's key)."""

    #: True when :meth:`append` publishes the message to every process, this
    #: one included (the caller then does not deliver it itself), and
    #: messages come back through the broker as ``unpack``-able bytes.
    distributed: bool

    def append(self, key: Hashable, head: bytes, size: int | None = None) -> tuple[int, str, bytes]:
        """Give the next message of ``key`` (its envelope :func:`head
        <snorky_sync.services.history.envelope_head>`) its offset and keep it,
        with the last ``size`` (at least 1; None: the store's) of ``key``'s:
        ``(offset, epoch, envelope)``.  A distributed store raises
        :class:`~.base.BrokerUnavailable` when it cannot be reached."""
        ...

    def read(self, key: Hashable) -> tuple[int, str, Entries]:
        """``(current offset, epoch, entries kept)`` of ``key``; a channel
        without history gets its epoch now (so a later ``since`` with it stays
        recoverable).  Raises as :meth:`append`."""
        ...


class _Stream:
    __slots__ = ("epoch", "offset", "entries", "touched")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=size)
        self.touched = time.monotonic()


class LocalHistory:
    """Streams in this process's memory (callers hold their service's lock)."""

    distributed = False

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self.streams: dict[Hashable, _Stream] = {}
        self._sweep_at = time.monotonic() + ttl

    def _stream(self, key: Hashable) -> _Stream:
        """The live stream of ``key``, created if need be (idle ones are forgotten)."""
        now = time.monotonic()
        if now >= self._sweep_at:  # forget idle streams (bounded memory)
            self._sweep_at = now + self.ttl
            for k in [k for k, s in self.streams.items() if now - s.touched > self.ttl]:
                del self.streams[k]
        stream = self.streams.get(key)
        if stream is None or now - stream.touched > self.ttl:
            stream = self.streams[key] = _Stream(self.size)
        return stream

    def append(self, key: Hashable, head: bytes, size: int | None = None) -> tuple[int, str, bytes]:
        stream = self._stream(key)
        if size is not None and stream.entries.maxlen != size:  # the channel's own size
            stream.entries = collections.deque(stream.entries, maxlen=size)
        stream.offset += 1
        stream.touched = time.monotonic()
        env = finish_envelope(head, stream.offset, stream.epoch)
        stream.entries.append((stream.offset, env))
        return stream.offset, stream.epoch, env

    def read(self, key: Hashable) -> tuple[int, str, Entries]:
        stream = self._stream(key)
        return stream.offset, stream.epoch, list(stream.entries)

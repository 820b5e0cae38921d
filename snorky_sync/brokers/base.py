"""The broker interface."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from .history import HistoryStore, LocalHistory

__all__ = ["Broker", "Handler", "BrokerUnavailable", "channel_topic"]

Handler = Callable[[bytes], None]


def channel_topic(family: str, key: bytes) -> str:
    """The topic of one channel of a routed ``family``: ``<family>:<32 hex>``.

    ``key`` is the channel's canonical bytes (:func:`snorky_sync.wire.key_to_bytes`),
    which clients choose: it is hashed (BLAKE2b, 16 bytes, with the family in the
    hash too), never spliced into the name, so the name is bounded, holds no
    client data, and no channel name can reach another channel's or another
    service's topic.
    """
    fam = family.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(len(fam).to_bytes(4, "big") + fam + key, digest_size=16)
    return f"{family}:{digest.hexdigest()}"


class BrokerUnavailable(Exception):
    """The broker cannot answer now (Redis unreachable)."""


class Broker:
    """Delivers ``publish(topic, data)`` to the handlers other processes
    registered for ``topic`` with :meth:`subscribe` (never back to this one).

    Handlers run in the broker's listener greenlet, one message at a time, in
    the order each publishing process published.

    A distributed broker also keeps track of the other processes (peers):
    every process sends a heartbeat every ``heartbeat_interval`` seconds, and
    a peer silent for ``peer_expiry`` seconds is declared gone.  Objects
    registered with :meth:`add_listener` hear about it (see
    :class:`PeerListener`), and can own keys cluster-wide with
    :meth:`claim` (exclusive ownership that dies with the process).
    """

    #: "local", "connected", "disconnected" — shown by /healthz
    state = "local"

    heartbeat_interval = 1.0
    peer_expiry = 5.0

    def __init__(self) -> None:
        self.origin = os.urandom(8)  # this process, as seen by the others
        self.handlers: dict[str, Handler] = {}
        self.echo: set[str] = set()   # topics whose handler also gets this process's messages
        self.listeners: list[PeerListener] = []
        self.families: dict[str, tuple[Handler, bool]] = {}  # routed family -> (handler, echo)
        self.placed: dict[str, str] = {}  # routed family -> the family whose channels place it
        self.wanted: dict[str, int] = {}  # channel topic -> local interest (see want)

    #: False for the in-process broker: there is nobody else to tell.
    distributed = False

    def subscribe(self, topic: str, handler: Handler, echo: bool = False) -> None:
        """Deliver messages published on ``topic`` to ``handler``.

        By default only other processes' messages (this one delivered locally
        already).  ``echo=True`` delivers this process's own messages too, in
        the same order every process sees them: use it when all processes
        must apply a sequence of events in one agreed order.
        """
        if topic in self.handlers:
            raise ValueError(f"topic {topic!r} already has a handler")
        self.handlers[topic] = handler
        if echo:
            self.echo.add(topic)

    # -- routing by interest ---------------------------------------------------------
    def route(self, family: str, handler: Handler, echo: bool = False,
              placed_with: str | None = None) -> None:
        """Deliver messages published on the channel topics of ``family``
        (:func:`channel_topic`) to ``handler`` — but only those of channels this
        process wants (:meth:`want`): a publish to a channel reaches only the
        processes that have a local subscriber for it.  ``echo`` as in
        :meth:`subscribe`.  ``placed_with``: another routed family whose
        channels this one's follow: a topic ``family:<32 hex>`` is placed (on a
        shard) as ``placed_with:<32 hex>`` (a channel's presence on the
        channel's shard: :mod:`~snorky_sync.services.presence_routing`)."""
        if family in self.families:
            raise ValueError(f"family {family!r} already has a handler")
        self.families[family] = (handler, echo)
        if placed_with is not None:
            self.placed[family] = placed_with

    def placement(self, topic: str) -> str:
        """The name ``topic`` is placed by: itself, or for a family routed
        ``placed_with`` another, the other family's topic of the same channel."""
        family, _, digest = topic.rpartition(":")
        other = self.placed.get(family)
        return topic if other is None else f"{other}:{digest}"

    def want(self, topic: str) -> None:
        """This process has local interest in ``topic`` (a :func:`channel_topic`
        of a routed family): call it when a channel's first local subscriber
        arrives, and :meth:`unwant` when its last one leaves (calls are
        counted).  Never blocks; see :meth:`confirm`."""
        n = self.wanted.get(topic, 0)
        self.wanted[topic] = n + 1
        if n == 0 and topic not in self.handlers:
            handler, echo = self.families[topic.rpartition(":")[0]]
            self.handlers[topic] = handler
            if echo:
                self.echo.add(topic)

    def unwant(self, topic: str) -> None:
        """The last local subscriber of ``topic`` left (see :meth:`want`)."""
        n = self.wanted.get(topic, 0)
        if n > 1:
            self.wanted[topic] = n - 1
            return
        if n == 1:
            del self.wanted[topic]
            self._forget(topic)

    def _forget(self, topic: str) -> None:
        self.handlers.pop(topic, None)
        self.echo.discard(topic)

    def history_store(self, namespace: str, family: str, size: int, ttl: float) -> HistoryStore:
        """A store of channel histories (:mod:`.history`) for a service's
        ``namespace``, keeping ``size`` messages per channel for ``ttl``
        seconds after its last one.  A distributed broker's is shared by
        every process and its ``append`` publishes each message on the
        channel's topic of the routed ``family`` (:meth:`route` it with
        echo).  In-process: a :class:`~.history.LocalHistory`."""
        return LocalHistory(size, ttl)

    def confirm(self, topic: str, timeout: float = 5.0) -> bool:
        """Block until messages published on a wanted ``topic`` from now on
        reach this process (Redis confirmed the subscription): True, or False
        when it could not be confirmed (broker away, timeout).  Call it without
        holding a lock, before telling a client it is subscribed.  In-process:
        nothing to wait for."""
        return True

    def add_listener(self, listener: PeerListener) -> None:
        """Tell ``listener`` about connections and peers (a :class:`PeerListener`)."""
        self.listeners.append(listener)

    def heard_from(self, origin: bytes) -> None:
        """A message from ``origin`` arrived: track it as a peer (for expiry) if it is not."""

    def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to the other processes' handlers of ``topic``."""
        raise NotImplementedError

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything published so far has left this process;
        False if it had not within ``timeout`` seconds."""
        return True

    def barrier(self, timeout: float = 2.0) -> bool:
        """Block until every message that reached the broker before this call
        (from any process, on any topic) has been handled here.  A process
        that answered a client after ``flush()`` is then visible to a
        ``barrier()`` taken afterwards on any other process.  False when it
        could not be confirmed (broker away, timeout).  In-process: nothing
        to wait for."""
        return True

    # -- cluster-wide ownership ---------------------------------------------------
    def new_claim_token(self) -> str:
        """A fresh ownership token of this process (its origin, then random)."""
        return self.origin.hex() + os.urandom(4).hex()

    def claim(self, key: str) -> str | None:
        """Own ``key`` cluster-wide: returns an ownership token, or None if a
        live process owns it.  Raises :class:`BrokerUnavailable` when the
        broker cannot be asked.  A key owned by a process that stopped
        heartbeating can be claimed by another.  The in-process broker owns
        everything (there is nobody to compete with)."""
        return "local"

    def owner(self, key: str) -> str | None:
        """The origin (hex) of the live process owning ``key``, or None.
        Raises :class:`BrokerUnavailable`.  In-process: nobody else."""
        return None

    def claim_many(self, pairs: Iterable[tuple[str, str]]) -> list[bool]:
        """Re-assert ``(key, token)`` claims (after a reconnect): True for each
        still (or again) ours.  Raises :class:`BrokerUnavailable`."""
        return [True for _ in pairs]

    def release(self, pairs: Iterable[tuple[str, str]], wait: bool = False) -> None:
        """Give up ``(key, token)`` claims (only where the token still matches).
        Best effort; ``wait=True`` returns once Redis has applied it."""

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called (and not stopped): before that a
        distributed broker neither receives nor heartbeats, so nothing crosses
        processes.  The in-process broker has nothing to start."""
        return True

    def start(self) -> None:
        """Begin listening (idempotent)."""

    def stop(self) -> None:
        """Stop listening."""

    def health(self) -> dict[str, Any]:
        return {"broker": type(self).__name__, "state": self.state}


class PeerListener:
    """What :meth:`Broker.add_listener` calls (all in the broker's listener
    greenlet; override what you need)."""

    def broker_connected(self) -> None:
        """The broker (re)connected and (re)subscribed: re-announce state.
        With several shards (:class:`~.sharded.ShardedBroker`): shard 0,
        which carries the process-wide topics, (re)connected."""

    def channels_reconnected(self, covers: Callable[[str], bool] | None) -> None:
        """The connection carrying channel topics (re)connected: messages of
        those channels may have been missed meanwhile.  ``covers(topic)``
        tells which channels (:func:`channel_topic`) it carries; None: all
        of them (one Redis).  Called after :meth:`broker_connected`."""

    def peer_seen(self, origin: bytes) -> None:
        """A heartbeat from a peer that was unknown or declared gone."""

    def peer_gone(self, origin: bytes) -> None:
        """A peer stopped heartbeating for ``peer_expiry`` seconds (or said goodbye)."""

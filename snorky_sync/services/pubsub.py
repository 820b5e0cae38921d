"""PubSub: clients subscribe to channels; a publish reaches every subscriber.

A channel is any JSON value, compared by value (:func:`snorky_sync.wire.json_key`).
:class:`PubSubBackend` lives in the backend registry and publishes without the
``can_publish`` check (PROTOCOL.md §3).

With ``history_size`` (off by default: then the frames are exactly Snorky
0.1's) every channel keeps its last messages (:mod:`.history`): each message
notification carries ``offset`` and ``epoch``, ``subscribe`` answers
``{"offset", "epoch"}``, and ``subscribe({channel, since: {offset, epoch}})``
first replays every message after ``since`` and then answers
``{"recovered": true, ...}`` — or replays nothing and answers
``"recovered": false`` when the history cannot fill the gap.  No message is
lost or delivered twice between the replay and live delivery.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import wire
from ..brokers.base import BrokerUnavailable, channel_topic
from ..metrics import counters
from . import history as _history
from . import retained
from .base import RPCError, RPCService, rpc_command
from .patterns import ChannelPatterns

__all__ = ["PubSubService", "PubSubBackend"]

_json_key = wire.json_key


class PubSubService(RPCService):
    """Frontend PubSub: ``subscribe``, ``unsubscribe``, ``publish``.

    Limits (class attributes, override in a subclass): ``max_subscriptions``
    per connection (``Too many subscriptions``) and ``max_channel_size``
    bytes of JSON per channel (``Channel too long``).

    ``backend_only``: channel names and globs (``("news", "prices.*")``) that
    only the backend (:class:`PubSubBackend`) publishes to; a client's
    ``publish`` there answers ``Not authorized``.  None (the default) leaves
    it to ``SNORKY_BACKEND_ONLY_CHANNELS`` when the registry is mounted
    (:mod:`snorky_sync.services.configure`); ``()`` means none, whatever the
    setting says.
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_subscriptions = 1000
    max_channel_size = 1024

    def __init__(self, name: str, history_size: int = 0, history_ttl: float = 300.0,
                 backend_only: Iterable[str] | str | None = None) -> None:
        """``history_size``: messages kept per channel (0: no history, 0.1's
        frames); ``history_ttl``: seconds a channel's history lives after its
        last message; ``backend_only``: see the class."""
        super().__init__(name)
        self.backend_only: ChannelPatterns | None = (
            None if backend_only is None else ChannelPatterns(backend_only))
        if not isinstance(history_size, int) or history_size < 0:
            raise TypeError(f"PubSubService(history_size=...) is a count >= 0, got {history_size!r}")
        if not isinstance(history_ttl, (int, float)) or history_ttl <= 0:
            raise TypeError(f"PubSubService(history_ttl=...) is seconds > 0, got {history_ttl!r}")
        self.subscribers: dict[Any, dict] = {}   # channel key -> {client: None} (ordered set)
        self.subscriptions: dict[Any, set] = {}  # client -> channel keys
        self.history_size = history_size
        self.history_ttl = float(history_ttl)
        self.history: _history.LocalHistory | _history.RedisHistory | None = (
            _history.LocalHistory(history_size, self.history_ttl) if history_size else None)
        # clients whose subscribe is recovering a channel (Redis mode)
        self.gate = _history.LiveGate()

    def can_publish(self, client, channel: Any) -> bool:
        """Hook: may ``client`` publish to ``channel``?  Default: yes."""
        return True

    #: the broker's routed family of this service's channels (distributed broker only)
    _family: str | None = None

    def use_broker(self, broker) -> None:
        """With a distributed broker each channel is routed on its own
        (:meth:`~snorky_sync.brokers.base.Broker.route`): a process receives
        a channel's publishes only while it has a subscriber for it."""
        super().use_broker(broker)
        if not broker.distributed:
            return
        if self.history is not None:
            family = f"pubhist:{self.name}"
            self.history = _history.RedisHistory(broker, f"pubsub:{self.name}", family,
                                                 self.history_size, self.history_ttl)
            broker.route(family, self._deliver_history, echo=True)
        else:
            family = f"pubsub:{self.name}"
            broker.route(family, self._deliver_routed)
        self._family = family

    def _topic(self, key) -> str:
        assert self._family is not None
        return channel_topic(self._family, wire.key_to_bytes(key))

    def _confirmed(self, key) -> bool:
        """Wait (without the lock) until the broker receives ``key``'s channel."""
        if self._family is None:
            return True
        return self.cluster.confirm(self._topic(key))

    def do_publish(self, channel: Any, message: Any) -> int:
        """Deliver ``message`` to the channel's subscribers here and, through
        the broker, in every other process; returns the local recipients
        (with Redis history: 0, every process delivers it from Redis)."""
        key = _json_key(channel)
        history = self.history
        if history is not None:
            head = _history.envelope_head(self.name, {"type": "message", "channel": channel,
                                                      "message": message})
            if isinstance(history, _history.RedisHistory):
                try:
                    history.append(key, head)  # published by Redis, in offset order
                except BrokerUnavailable:
                    counters["pubsub_history_unavailable"] += 1
                    raise RPCError("History unavailable") from None
                return 0
            with self.lock:
                offset, _, env = history.append(key, head)
                return self.broadcast_frame(self.subscribers.get(key, ()), wire.frame_text(env))
        frame = wire.encode_frame(self.name, {"type": "message", "channel": channel, "message": message})
        with self.lock:
            n = self.broadcast_frame(self.subscribers.get(key, ()), frame)
        if self._family is not None:  # to the processes subscribed to this channel only
            self.cluster.publish(self._topic(key), wire.pack_routed(key, frame))
        return n

    def _deliver_history(self, data: bytes) -> None:
        """A message with history, from Redis (every process's, ours included)."""
        key, offset, env = _history.RedisHistory.unpack(data)
        frame = wire.frame_text(env)
        with self.lock:
            subs = self.subscribers.get(key)
            if subs:
                self.broadcast_frame(self.gate.recipients(key, offset, frame, subs), frame)

    def _deliver_routed(self, data: bytes) -> None:
        """A publish from another process: the same frame, to our subscribers."""
        key, frame = wire.unpack_routed(data)
        with self.lock:
            self.broadcast_frame(self.subscribers.get(key, ()), frame)

    def _key(self, channel: Any):
        # right-sized (orjson's own output keeps KBs of slack) and checked before kept
        return retained.bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command(lock=False)  # with Redis history it reads Redis, without the lock
    def subscribe(self, req, channel, since=None):
        client = req.client
        if self.history is None:
            if since is not None:
                raise RPCError("History not enabled")
            key = self._key(channel)
            with self.lock:
                self._add(client, key)
            # answered once a publish made anywhere from now on reaches it
            self._confirmed(key)
            return None
        key = self._key(channel)
        if isinstance(self.history, _history.LocalHistory):
            with self.lock:  # publishes take the lock too: nothing slips between
                self._add(client, key)
                current, epoch, entries = self.history.read(key)
                return _history.replay(client, since, current, epoch, entries, "pubsub")
        with self.lock:
            self._add(client, key)
            self.gate.hold(key, client)
        try:
            # live messages reach us before the read: none falls between the two
            if not self._confirmed(key):
                raise BrokerUnavailable("subscription not confirmed")
            current, epoch, entries = self.history.read(key)
        except BrokerUnavailable:
            with self.lock:
                mine = self.subscriptions.get(client)
                if mine is not None and key in mine:
                    self._drop(client, key, mine)
            counters["pubsub_history_unavailable"] += 1
            raise RPCError("History unavailable") from None
        with self.lock:
            held = self.gate.release(key, client)
            if held is None:  # the client left meanwhile
                raise RPCError("Not subscribed")
            answer = _history.replay(client, since, current, epoch, entries, "pubsub")
            answer["offset"] = _history.send_newer(client, held, current, self.gate, key)
            return answer

    def _add(self, client, key) -> None:
        mine = self.subscriptions.get(client)
        if mine is not None and key in mine:
            raise RPCError("Already subscribed")
        if mine is not None and len(mine) >= self.max_subscriptions:
            raise RPCError("Too many subscriptions")
        if mine is None:
            mine = self.subscriptions[client] = set()
        mine.add(key)
        subs = self.subscribers.get(key)
        if subs is None:
            subs = self.subscribers[key] = {}
            if self._family is not None:  # the channel's first subscriber here
                self.cluster.want(self._topic(key))
        subs[client] = None

    @rpc_command
    def unsubscribe(self, req, channel):
        key = _json_key(channel)
        client = req.client
        mine = self.subscriptions.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not subscribed")
        self._drop(client, key, mine)

    @rpc_command
    def publish(self, req, channel, message):
        self._key(channel)
        rule = self.backend_only
        if rule and channel in rule:
            counters["pubsub_publishes_refused_backend_only"] += 1
            raise RPCError("Not authorized")
        if not self.can_publish(req.client, channel):
            raise RPCError("Not authorized")
        self.do_publish(channel, message)

    def _drop(self, client, key, mine: set) -> None:
        mine.discard(key)
        if not mine:
            del self.subscriptions[client]
        subs = self.subscribers.get(key)
        if subs is not None:
            subs.pop(client, None)
            if not subs:
                del self.subscribers[key]
                if self._family is not None:  # its last subscriber here left
                    self.cluster.unwant(self._topic(key))
        self.gate.forget(key, client)

    def client_disconnected(self, client) -> None:
        with self.lock:
            mine = self.subscriptions.get(client)
            if mine:
                for key in list(mine):
                    self._drop(client, key, mine)
            self.gate.forget_client(client)


class PubSubBackend(RPCService):
    """Backend PubSub: ``publish`` to the frontend service, no authorization hook."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    def __init__(self, name: str, frontend: PubSubService) -> None:
        super().__init__(name)
        if not isinstance(frontend, PubSubService):
            raise TypeError("PubSubBackend(name, frontend): frontend is the PubSubService it "
                            f"publishes to, got {type(frontend).__name__}")
        self.frontend = frontend

    @rpc_command(lock=False)
    def publish(self, req, channel, message):
        # The frontend takes its own lock; this service has no state to guard.
        self.frontend.do_publish(channel, message)

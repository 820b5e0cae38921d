"""PubSub: clients subscribe to channels; a publish reaches every subscriber.

A channel is any JSON value, compared by value (:func:`snorky_sync.wire.json_key`).
:class:`PubSubBackend` lives in the backend registry and publishes without the
``can_publish`` check (PROTOCOL.md §3).
"""
from __future__ import annotations

from typing import Any

from .. import wire
from .base import RPCError, RPCService, bounded_key, rpc_command

__all__ = ["PubSubService", "PubSubBackend"]

_json_key = wire.json_key


class PubSubService(RPCService):
    """Frontend PubSub: ``subscribe``, ``unsubscribe``, ``publish``.

    Limits (class attributes, override in a subclass): ``max_subscriptions``
    per connection (``Too many subscriptions``) and ``max_channel_size``
    bytes of JSON per channel (``Channel too long``).
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_subscriptions = 1000
    max_channel_size = 1024

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.subscribers: dict[Any, dict] = {}   # channel key -> {client: None} (ordered set)
        self.subscriptions: dict[Any, set] = {}  # client -> channel keys

    def can_publish(self, client, channel: Any) -> bool:
        """Hook: may ``client`` publish to ``channel``?  Default: yes."""
        return True

    def use_broker(self, broker) -> None:
        super().use_broker(broker)
        broker.subscribe(f"pubsub:{self.name}", self._deliver_routed)

    def do_publish(self, channel: Any, message: Any) -> int:
        """Deliver ``message`` to the channel's subscribers here and, through
        the broker, in every other process; returns the local recipients."""
        key = _json_key(channel)
        frame = wire.encode_frame(self.name, {"type": "message", "channel": channel, "message": message})
        with self.lock:
            n = self.broadcast_frame(self.subscribers.get(key, ()), frame)
        if self.broker is not None:
            self.broker.publish(f"pubsub:{self.name}", wire.pack_routed(key, frame))
        return n

    def _deliver_routed(self, data: bytes) -> None:
        """A publish from another process: the same frame, to our subscribers."""
        key, frame = wire.unpack_routed(data)
        with self.lock:
            self.broadcast_frame(self.subscribers.get(key, ()), frame)

    def _key(self, channel: Any):
        return bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command
    def subscribe(self, req, channel):
        key = self._key(channel)
        client = req.client
        mine = self.subscriptions.get(client)
        if mine is not None and key in mine:
            raise RPCError("Already subscribed")
        if mine is not None and len(mine) >= self.max_subscriptions:
            raise RPCError("Too many subscriptions")
        if mine is None:
            mine = self.subscriptions[client] = set()
        mine.add(key)
        self.subscribers.setdefault(key, {})[client] = None

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

    def client_disconnected(self, client) -> None:
        with self.lock:
            mine = self.subscriptions.get(client)
            for key in list(mine or ()):
                self._drop(client, key, mine)


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

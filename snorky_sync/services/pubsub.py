"""PubSub: clients subscribe to channels; a publish reaches every subscriber.

A channel is any JSON value, compared by value (:func:`snorky_sync.wire.json_key`).
:class:`PubSubBackend` lives in the backend registry and publishes without the
``can_publish`` check (protocol.md §3).

With ``history_size`` (off by default: then the frames are exactly Snorky
0.1's) every channel keeps its last messages (:mod:`.history`): each message
notification carries ``offset`` and ``epoch``, ``subscribe`` answers
``{"offset", "epoch"}``, and ``subscribe({channel, since: {offset, epoch}})``
first replays every message after ``since`` and then answers
``{"recovered": true, ...}`` — or replays nothing and answers
``"recovered": false`` when the history cannot fill the gap.  No message is
lost or delivered twice between the replay and live delivery.
``subscribe({channel, recent: n})`` sends the channel's last ``n`` messages
before the answer (a namespace's ``recent`` does it for every subscribe of
its channels: a "latest value" channel), and ``publish({channel, message,
excludeSender: true})`` reaches every subscriber but the publishing
connection, whose answer carries the message's ``offset`` and ``epoch``.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import wire
from ..logs import RateLimitedLogger
from ..metrics import counters
from . import history as _history
from . import idempotency as _idempotency
from . import namespaces as _namespaces
from . import presence as _presence
from . import retained
from .access import personal_allows
from .base import RPCError, RPCService, rpc_command
from .channel_commands import PresenceCommands, ServerChannels
from .membership import Membership
from .patterns import ChannelPatterns
from .presence import Presence

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Request

__all__ = ["PubSubService", "PubSubBackend"]

_json_key = wire.json_key
_warn = RateLimitedLogger(logging.getLogger("snorky_sync.services"))


class PubSubService(PresenceCommands, ServerChannels, RPCService):
    """Frontend PubSub: ``subscribe``, ``unsubscribe``, ``publish``.

    Limits (constructor keywords; the class attributes are the defaults):
    ``max_subscriptions`` per connection (``Too many subscriptions``) and
    ``max_channel_size`` bytes of JSON per channel (``Channel too long``).

    ``backend_only``: channel names and globs (``("news", "prices.*")``) that
    only the backend (:class:`PubSubBackend`) publishes to; a client's
    ``publish`` there answers ``Not authorized``.  None (the default) leaves
    it to ``SNORKY_BACKEND_ONLY_CHANNELS`` when the registry is mounted
    (:mod:`snorky_sync.services.configure`); ``()`` means none, whatever the
    setting says.

    ``personal_channels``: a string channel with ``#`` in its name
    (``dialog#alice,bob``) is readable, and publishable, only by the
    identities listed after the ``#`` (:mod:`.access`); others, anonymous
    included, are answered ``Not authorized`` (the backend publishes to it
    freely).  None (the default) leaves it to ``SNORKY_PERSONAL_CHANNELS``
    once mounted: off in an app's own services, on in the default app.

    ``presence=True``: every subscriber is in its channel's presence
    (:mod:`.presence`), with the ``meta`` it gives at ``subscribe`` and
    changes with ``updatePresence``; ``subscribe({channel, presence: true})``
    answers the entries and is told of changes; ``presence({channel})`` and
    ``presenceStats({channel})`` answer a subscriber.  Off by default (the
    default app: ``SNORKY_PUBSUB_PRESENCE``).  Limits: ``max_presence_entries``
    per channel (``Presence full``), ``max_presence_meta_size`` bytes of JSON
    of a ``meta`` (``Presence metadata too large``).

    ``namespaces``: who may subscribe and publish by channel name prefix
    (``public:news``), and the history size of each namespace's channels
    (:mod:`.namespaces`: a :class:`~.namespaces.Namespaces` or
    ``{name: Namespace(...)}``); asked after the personal channels and
    before :meth:`can_subscribe` / :meth:`can_publish`.  None (the
    default): every channel open, as in 0.1.

    ``max_recent``: the largest ``recent`` a ``subscribe`` may ask
    (``Recent too large``); the history size bounds what it gets anyway.

    ``idempotency_window``: seconds a publish's ``idempotencyKey`` is
    remembered (default 120): the same key on the same channel by the same
    publisher within it is delivered once and answered as the first was, on
    every worker with Redis (:mod:`.idempotency`).
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)
    members_name, not_member, joined_verb = "subscribed", "Not subscribed", "subscribed"

    max_presence_entries = 1000
    """Entries (connections) in one channel's presence (``Presence full``)."""
    max_presence_meta_size = 1024
    """Bytes of JSON of one connection's presence ``meta`` (``Presence metadata too large``)."""
    max_subscriptions = 1000
    """Channels subscribed per connection (``Too many subscriptions``)."""
    max_channel_size = 1024
    """Bytes of JSON of a channel name (``Channel too long``)."""
    max_recent = 100
    """The largest ``recent`` of a ``subscribe`` (``Recent too large``)."""

    def __init__(self, name: str, history_size: int = 0, history_ttl: float = 300.0,
                 backend_only: Iterable[str] | str | None = None, *,
                 max_subscriptions: int | None = None, max_channel_size: int | None = None,
                 personal_channels: bool | None = None, presence: bool = False,
                 max_presence_entries: int | None = None,
                 max_presence_meta_size: int | None = None,
                 namespaces: _namespaces.Namespaces | Mapping[str, _namespaces.Namespace] | None = None,
                 max_recent: int | None = None,
                 idempotency_window: float = _idempotency.DEFAULT_WINDOW,
                 ) -> None:
        """``history_size``: messages kept per channel (0: no history, 0.1's
        frames); ``history_ttl``: seconds a channel's history lives after its
        last message; ``backend_only``, ``personal_channels``, ``presence``,
        ``namespaces`` and the limits: see the class (None: the class's, or
        the settings' once mounted)."""
        super().__init__(name)
        self.set_limits(max_subscriptions=max_subscriptions, max_channel_size=max_channel_size,
                        max_presence_entries=max_presence_entries,
                        max_presence_meta_size=max_presence_meta_size, max_recent=max_recent)
        if not isinstance(presence, bool):
            raise TypeError(f"PubSubService(presence=...) is True or False, got {type(presence).__name__}")
        self.backend_only: ChannelPatterns | None = (
            None if backend_only is None else ChannelPatterns(backend_only))
        self.personal_channels = personal_channels
        self.history_size, self.history_ttl = _history.configured(
            "PubSubService", history_size, history_ttl)
        # who is subscribed to what; with a distributed broker each channel is routed
        self.subscribed = Membership(self, "max_subscriptions", too_many="Too many subscriptions")
        self.history = _history.ChannelHistory(self, self.subscribed, "pubsub", self.history_size,
                                               self.history_ttl) if self.history_size else None
        #: channel namespaces (:mod:`.namespaces`), None: every channel open
        self.namespaces = _namespaces.configured("PubSubService", namespaces, self.history_size)
        _namespaces.size_history(self.history, self.namespaces)
        #: the channels' presence (:mod:`.presence`), None unless ``presence=True``
        #: or a namespace's ``presence=True``
        self.presence_state: Presence | None = _presence.configured(self, presence, self.namespaces)
        #: the connections of the registry (or registries) serving this service
        #: here: those a server-side subscription may reach
        self.connected: set[Client] = set()
        #: publishes by ``idempotencyKey`` (in Redis with a distributed broker)
        self.idempotency = _idempotency.Idempotency(
            self, _idempotency.window("PubSubService", idempotency_window))

    @property
    def subscribers(self) -> dict[Any, dict[Any, Any]]:
        """channel key -> {client: None} (an ordered set), this process's subscribers."""
        return self.subscribed.members

    @property
    def subscriptions(self) -> dict[Any, set[Any]]:
        """client -> its channel keys."""
        return self.subscribed.of_client

    def can_publish(self, client: Client, channel: Any) -> bool:
        """Hook: may ``client`` publish to ``channel``?  Default: yes."""
        return True

    def can_subscribe(self, client: Client, channel: Any) -> bool:
        """Hook: may ``client`` read ``channel`` (``subscribe``, with or
        without ``since``)?  Default: yes.  Asked before the subscription
        exists, without the service's lock (it may wait on a database); a
        refusal answers ``Not authorized`` and the client receives nothing
        of the channel, not even a publish made while the hook ran."""
        return True

    def check_subscribe(self, client: Client, channel: Any) -> None:
        """Raise ``Not authorized`` unless ``client`` may read ``channel``:
        every way into a channel asks this first."""
        if (self.personal_channels and not personal_allows(channel, client.identity)
                or self.namespaces is not None and not self.namespaces.may_subscribe(client, channel)
                or not self.can_subscribe(client, channel)):
            counters["pubsub_subscribes_refused"] += 1
            raise RPCError("Not authorized")

    def use_broker(self, broker: Broker) -> None:
        """With a distributed broker each channel is routed on its own
        (:meth:`~snorky_sync.brokers.base.Broker.route`): a process receives
        a channel's publishes only while it has a subscriber for it."""
        super().use_broker(broker)
        if not broker.distributed:
            return
        family = f"pubhist:{self.name}" if self.history is not None else f"pubsub:{self.name}"
        if self.presence_state is not None:  # on each channel's shard, routed with it
            self.presence_state.use_broker(broker, family)
        if self.history is not None:  # Redis publishes each message, in offset order
            self.history.use_broker(broker, f"pubsub:{self.name}", family)
            self.subscribed.route(broker, family, self.history.deliver, echo=True)
        else:
            self.subscribed.route(broker, family, self._deliver_routed)

    def do_publish(self, channel: Any, message: Any) -> int:
        """Deliver ``message`` to the channel's subscribers here and, through
        the broker, in every other process; returns the local recipients
        (with Redis history: 0, every process delivers it from Redis)."""
        key = _json_key(channel)
        history = self.history
        if history is not None:
            msg = {"type": "message", "channel": channel, "message": message}
            if history.distributed:
                history.append(key, msg)  # delivered from Redis, by every process
                return 0
            with self.lock:
                frame = history.append(key, msg)
                assert frame is not None  # in this process
                return self.broadcast_frame(self.subscribed.clients(key), frame)
        frame = wire.encode_frame(self.name, {"type": "message", "channel": channel, "message": message})
        with self.lock:
            n = self.broadcast_frame(self.subscribed.clients(key), frame)
        self.subscribed.publish(key, frame)  # to the processes subscribed to this channel only
        return n

    def _deliver_routed(self, data: bytes) -> None:
        """A publish from another process: the same frame, to our subscribers."""
        with self.lock:
            self.subscribed.deliver(data)

    def idempotency_place(self, key: Hashable) -> str | None:
        """Where an ``idempotencyKey`` on channel ``key`` is claimed: with the
        channel's Redis history (recorded by its append), else None."""
        return None if self.history is None else self.history.idempotency_place(key)

    def _key(self, channel: Any) -> Hashable:
        # right-sized (orjson's own output keeps KBs of slack) and checked before kept
        return retained.bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command(lock=False)  # with Redis history it reads Redis, without the lock
    def subscribe(self, req: Request, channel: Any, since: Any = None, presence: Any = False,
                  meta: Any = None, recent: Any = None) -> Any:
        client = req.client
        history = self.history
        state = self.presence_state
        if recent is not None:  # Chat's order: History not enabled, then Invalid params
            if history is None:
                raise RPCError("History not enabled")
            self._check_recent(recent)
        if presence is not False or meta is not None:
            _presence.enabled(state, channel)  # the service's, or the channel's namespace's
            if not isinstance(presence, bool):
                raise RPCError("Invalid params")
        kept = state.meta(meta) if state is not None else None
        if history is None:
            if since is not None:
                raise RPCError("History not enabled")
            key = self._key(channel)
            self.check_subscribe(client, channel)  # before it is a member: nothing reaches it
            with self.lock:
                answer = self._add(client, key, kept, presence)
            # answered once a publish made anywhere from now on reaches it
            self.subscribed.confirm(key)
            if state is not None:
                state.published(key)  # our entry reached Redis before the page hears back
            return answer
        key = self._key(channel)
        self.check_subscribe(client, channel)  # before the history is read or anything held
        if since is not None and self.subscribed.has(client, key):  # a gap: recovery in place
            return history.recover(client, key, since, gone="Not subscribed")

        def add() -> tuple[Hashable, dict[str, Any] | None]:
            return key, self._add(client, key, kept, presence)

        def undo() -> None:
            self.subscribed.drop(client, key)
            if state is not None:
                state.leave(client, key)

        def confirm(k: Hashable) -> bool:
            # while the channel's live messages are held for the page: our entry
            # reaches Redis, so none arrives between the answer's offset and the answer
            if state is not None:
                state.published(k)
            return self.subscribed.confirm(k)
        if recent is None and since is None and self.namespaces is not None:
            recent = self.namespaces.of(channel).recent  # a "latest value" namespace
        return history.enter(client, add, since, recent, confirm=confirm, undo=undo, gone="Not subscribed")

    def _check_recent(self, recent: Any) -> None:
        """``subscribe``'s ``recent``: a count, at most :attr:`max_recent`."""
        if isinstance(recent, bool) or not isinstance(recent, int) or recent < 0:
            raise RPCError("Invalid params")
        if recent > self.max_recent:
            raise RPCError("Recent too large")

    def _add(self, client: Client, key: Hashable, meta: Any = None,
             watch: bool = False) -> dict[str, Any] | None:
        """Under the lock: subscribe ``client`` to ``key`` (in its presence
        with ``meta`` when the service keeps it); the answer's presence part
        with ``watch``, else None."""
        state = self.presence_state
        if state is not None:
            state.check_room(client, key)
        if not self.subscribed.add(client, key):
            raise RPCError("Already subscribed")
        if state is None:
            return None
        entries = state.enter(client, key, meta, watch)
        if entries is None:
            return None
        return {"presence": entries, "client": state.client_id(client)}

    @rpc_command
    def unsubscribe(self, req: Request, channel: Any) -> None:
        if not self._drop(req.client, _json_key(channel)):
            raise RPCError("Not subscribed")

    @rpc_command(lock=False)  # the checks under the lock; with Redis it waits for the broker
    def publish(self, req: Request, channel: Any, message: Any, exclude_sender: Any = False,
                idempotency_key: Any = None) -> Any:
        if not isinstance(exclude_sender, bool):
            raise RPCError("Invalid params")
        if idempotency_key is not None:  # once per key within the window, answered as the first
            key = self._key(channel)
            return self.idempotency.once(_idempotency.scope(key, req.client.identity),
                                         idempotency_key,
                                         lambda: self.publish(req, channel, message, exclude_sender),
                                         self.idempotency_place(key))
        with self.lock:
            key = self._check_publish(req, channel)
        if not exclude_sender:  # 0.1's publish
            self.do_publish(channel, message)
            return None
        return self.publish_excluding(req, key, channel, message)

    def _check_publish(self, req: Request, channel: Any) -> Hashable:
        """Under the lock: ``channel``'s key, unless ``req``'s client may not publish there."""
        key = self._key(channel)
        rule = self.backend_only
        if rule and channel in rule:
            counters["pubsub_publishes_refused_backend_only"] += 1
            raise RPCError("Not authorized")
        if self.personal_channels and not personal_allows(channel, req.client.identity):
            raise RPCError("Not authorized")
        if self.namespaces is not None and not self.namespaces.may_publish(
                req.client, channel, lambda: self.subscribed.has(req.client, key)):
            raise RPCError("Not authorized")
        if not self.can_publish(req.client, channel):
            raise RPCError("Not authorized")
        return key

    def publish_excluding(self, req: Request, key: Hashable, channel: Any, message: Any) -> Any:
        """``publish({..., excludeSender: true})``: every subscriber of the
        channel but ``req``'s connection (its other connections included);
        answered ``{"offset", "epoch"}`` of the message with history (the
        answer comes where the message would have, so the sender's offsets
        stay contiguous), else null."""
        client = req.client
        msg = {"type": "message", "channel": channel, "message": message}
        history = self.history
        if history is not None:
            answered: list[Any] = []  # the answer, for an idempotencyKey's duplicates

            def reply(data: dict[str, Any]) -> None:
                answered.append(data)
                req.reply(data)
            history.append_from(key, msg, client, reply)
            return answered[0] if answered else None
        frame = wire.encode_frame(self.name, msg)
        with self.lock:
            self.broadcast_frame([c for c in self.subscribed.clients(key) if c is not client], frame)
        self.subscribed.publish(key, frame)  # the other processes: the sender is not there
        return None

    def _drop(self, client: Client, key: Hashable) -> bool:
        if not self.subscribed.drop(client, key):
            return False
        if self.history is not None:
            self.history.forget(key, client)
        if self.presence_state is not None:
            self.presence_state.leave(client, key)
        return True

    def client_disconnected(self, client: Client) -> None:
        with self.lock:
            if self.presence_state is not None:  # before drop_all forgets its channels
                for key in self.subscribed.keys_of(client):
                    self.presence_state.leave(client, key)
            self.connected.discard(client)
            self.subscribed.drop_all(client)
            if self.history is not None:
                self.history.forget_client(client)  # every key's

    # -- server-side subscriptions (ControlService, connect_channels: ServerChannels) ----
    def subscribe_client(self, client: Client, channel: Any) -> bool:
        """Subscribe ``client`` to ``channel`` on the server's initiative
        (``control.subscribe``, :meth:`connect_channels`), after the read
        authorization of a page's subscribe.  The page gets
        ``{"type": "subscribed", "channel": channel}`` before any message of
        the channel; once this returns, a publish made anywhere reaches it.
        True when subscribed now, False when it was already (or is gone);
        RPCError ``Not authorized``, ``Too many subscriptions``, ``Channel too
        long`` (or ``Presence full``) when refused."""
        key = self._key(channel)
        self.check_subscribe(client, channel)  # before it is a member: nothing reaches it
        with self.lock:
            if client not in self.connected or self.subscribed.has(client, key):
                return False
            self._add(client, key)  # in the channel's presence too, when kept (meta null)
            counters["pubsub_server_subscribes"] += 1
            # under the lock: before any message of the channel (publishes deliver under it)
            self.send_message_to(client, {"type": "subscribed", "channel": channel})
        self.subscribed.confirm(key)
        if self.presence_state is not None:
            self.presence_state.published(key)
        return True

    def unsubscribe_client(self, client: Client, channel: Any) -> bool:
        """Take ``client`` out of ``channel`` on the server's initiative; the
        page gets ``{"type": "unsubscribed", "channel": channel}`` after the
        last message of the channel it receives.  False when it was not in it."""
        with self.lock:
            if not self._drop(client, _json_key(channel)):
                return False
            self.send_message_to(client, {"type": "unsubscribed", "channel": channel})
        return True



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
    def publish(self, req: Request, channel: Any, message: Any, exclude_sender: Any = False,
                idempotency_key: Any = None) -> None:
        if exclude_sender is not False:  # a page's option: the backend is no subscriber
            raise RPCError("excludeSender is for a page's publish (the backend has no subscription)")
        # The frontend takes its own lock; this service has no state to guard.
        frontend = self.frontend
        if idempotency_key is None:
            frontend.do_publish(channel, message)
            return
        # the frontend's keys (Redis with a distributed broker), the backend's scope
        key = frontend.channel_key(channel)
        frontend.idempotency.once(_idempotency.scope(key, backend=True),
                                  idempotency_key, lambda: frontend.do_publish(channel, message),
                                  frontend.idempotency_place(key))

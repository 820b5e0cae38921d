"""Chat with presence (protocol.md §3).

Connections join channels; presence counts identities, not connections: a
user with two tabs joins once (``presence: joined`` when their first
connection joins) and leaves once (``left`` when their last one leaves).
Every connection needs an identity (the endpoint's ``authenticate`` hook).

With a distributed broker (Redis) presence is global and routed per
channel (:mod:`.chat_members`): each of a process's connections in a
channel is an entry in the channel's Redis hash, on the channel's shard,
and its changes reach only the processes with a member of the channel;
a process whose first connection joins a channel reads the hash (once
subscribed) before that join is answered.  Each process counts an identity
present while it has a connection on any process, and tells its own
connections ``joined`` / ``left`` on the transitions.  Messages and read
receipts are routed to the processes with a member.  A process that stops
heartbeating is dropped by the others, whose connections then see ``left``
for the identities only it had.

The server can join a connection itself (the backend's
``control.subscribe({identity, service, channel})``, or
:meth:`ChatService.connect_channels` as it connects), through the read
authorization of a page's ``join`` (:meth:`ChatService.check_join`); the page
is told ``{"type": "subscribed", "channel", "members"}`` (what a ``join``
would have answered) and ``{"type": "unsubscribed", "channel"}`` when the
server takes it out (``control.unsubscribe``); the other members see the
usual ``presence`` ``joined`` / ``left``.
"""
from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

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
from .chat_members import Members
from .membership import Membership
from .presence import Presence

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Request

__all__ = ["ChatService"]

_json_key = wire.json_key
_warn = RateLimitedLogger(logging.getLogger("snorky_sync.services"))


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset."""
    return datetime.now(timezone.utc).isoformat()


class _Channel:
    __slots__ = ("members", "remote", "value")

    def __init__(self, value: Any) -> None:
        self.value = value  # as kept (retained.key_value): the string, or its JSON
        # identity key -> (identity, {client: None}): this process's connections
        self.members: dict[Any, tuple[Any, dict[Any, Any]]] = {}
        # identity key -> (identity, {entry: None}): other processes' connections in it
        self.remote: dict[Any, tuple[Any, dict[Any, Any]]] = {}

    def identities(self) -> list[Any]:
        out = [ident for ident, _ in self.members.values()]
        out.extend(ident for k, (ident, _) in self.remote.items() if k not in self.members)
        return out

    def clients(self) -> Iterator[Client]:
        for _, conns in self.members.values():
            yield from conns


class ChatService(PresenceCommands, ServerChannels, RPCService):
    """``join``, ``leave``, ``send``, ``read``; limits (constructor keywords,
    the class attributes are the defaults) ``max_channels`` per connection,
    ``max_channel_size`` bytes of JSON per channel and ``max_message_size``.

    With ``history_size`` (off by default: 0.1's frames) each channel keeps
    its last messages (:mod:`.history`): messages carry ``offset`` and
    ``epoch``; ``join`` answers them next to ``members``; ``join({channel,
    since})`` replays the messages missed since then before answering (with
    ``recovered``), ``join({channel, recent: n})`` the last ``n`` messages.

    ``personal_channels``: a string channel with ``#`` in its name
    (``dm#alice,bob``) may be joined only by the identities listed after the
    ``#`` (:mod:`.access`); others are answered ``Not authorized``.  None
    (the default) leaves it to ``SNORKY_PERSONAL_CHANNELS`` once mounted:
    off in an app's own services, on in the default app.

    ``presence=True`` (off by default; the default app:
    ``SNORKY_CHAT_PRESENCE``): besides the identities above, every
    connection in a channel is a presence entry (:mod:`.presence`) with the
    ``meta`` it gives at ``join`` and changes with ``updatePresence``;
    ``join({channel, presence: true})`` also answers the entries and is told
    of changes (``presenceChange``); ``presence({channel})`` and
    ``presenceStats({channel})`` answer a member.  Limits:
    ``max_presence_entries`` per channel (``Presence full``),
    ``max_presence_meta_size`` bytes of JSON of a ``meta``.

    ``namespaces``: who may join (``subscribe``) and send (``publish``) by
    channel name prefix (``team:dev``), and the history size of each
    namespace's channels (:mod:`.namespaces`); asked after the identity and
    personal channels checks and before :meth:`can_join`.  None (the
    default): every channel open, as in 0.1.

    ``idempotency_window``: seconds a ``send``'s ``idempotencyKey`` is
    remembered (default 120): the same key in the same channel from the
    same identity within it is delivered once and answered as the first
    was, on every worker with Redis (:mod:`.idempotency`).
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)
    members_name, not_member, joined_verb = "joined", "Not joined", "joined"

    max_presence_entries = 1000
    """Entries (connections) in one channel's presence (``Presence full``)."""
    max_presence_meta_size = 1024
    """Bytes of JSON of one connection's presence ``meta`` (``Presence metadata too large``)."""
    max_channels = 1000
    """Channels joined per connection (``Too many channels``)."""
    max_channel_size = 1024
    """Bytes of JSON of a channel name (``Channel too long``)."""
    max_message_size = 64 * 1024
    """Bytes of JSON of a message's ``body`` (``Message too large``); with
    history, each channel keeps ``history_size`` of them."""

    def __init__(self, name: str, history_size: int = 0, history_ttl: float = 300.0, *,
                 max_channels: int | None = None, max_channel_size: int | None = None,
                 max_message_size: int | None = None, personal_channels: bool | None = None,
                 presence: bool = False, max_presence_entries: int | None = None,
                 max_presence_meta_size: int | None = None,
                 namespaces: _namespaces.Namespaces | Mapping[str, _namespaces.Namespace] | None = None,
                 idempotency_window: float = _idempotency.DEFAULT_WINDOW,
                 ) -> None:
        """``history_size``: messages kept per channel (0: none, 0.1's frames);
        ``history_ttl``: seconds a channel's history lives after its last
        message; ``personal_channels``, ``presence``, ``namespaces`` and the
        limits: see the class (None: the class's, or the settings' once mounted)."""
        super().__init__(name)
        self.set_limits(max_channels=max_channels, max_channel_size=max_channel_size,
                        max_message_size=max_message_size,
                        max_presence_entries=max_presence_entries,
                        max_presence_meta_size=max_presence_meta_size)
        if not isinstance(presence, bool):
            raise TypeError(f"ChatService(presence=...) is True or False, got {type(presence).__name__}")
        self.history_size, self.history_ttl = _history.configured(
            "ChatService", history_size, history_ttl)
        self.personal_channels = personal_channels
        self.channels: dict[Any, _Channel] = {}
        # the connections in each channel here; with a distributed broker each channel is routed
        self.joined = Membership(self, "max_channels", too_many="Too many channels")
        self.history = _history.ChannelHistory(self, self.joined, "chat", self.history_size,
                                               self.history_ttl) if self.history_size else None
        #: channel namespaces (:mod:`.namespaces`), None: every channel open
        self.namespaces = _namespaces.configured("ChatService", namespaces, self.history_size)
        _namespaces.size_history(self.history, self.namespaces)
        #: per-connection presence with metadata (:mod:`.presence`), None unless
        #: ``presence=True`` or a namespace's ``presence=True``
        self.presence_state: Presence | None = _presence.configured(self, presence, self.namespaces)
        #: with a distributed broker, the identities in each channel on every
        #: process (:mod:`.chat_members`)
        self.members: Members | None = None
        #: the connections of the registry (or registries) serving this service
        #: here: those a server-side join may reach
        self.connected: set[Client] = set()
        #: sends by ``idempotencyKey`` (in Redis with a distributed broker)
        self.idempotency = _idempotency.Idempotency(
            self, _idempotency.window("ChatService", idempotency_window))

    @property
    def client_channels(self) -> dict[Any, set[Any]]:
        """client -> the keys of the channels it joined."""
        return self.joined.of_client

    subscriptions = client_channels  # the control service's name (connections({service}))

    def use_broker(self, broker: Broker) -> None:
        """With a distributed broker, presence (the identities in a channel)
        and messages and read receipts are routed per channel
        (:mod:`.chat_members`, :meth:`~snorky_sync.brokers.base.Broker.route`):
        only to the processes that have a member of the channel."""
        super().use_broker(broker)
        if broker.distributed:
            family = f"chatmsg:{self.name}"
            from ..brokers.redis import RedisBroker
            from ..brokers.sharded import ShardedBroker
            if isinstance(broker, (RedisBroker, ShardedBroker)):  # (the tests' fakes: each its own)
                self.members = Members(self, broker, family)  # on each channel's shard, routed with it
            if self.presence_state is not None:  # on each channel's shard, routed with it
                self.presence_state.use_broker(broker, family)
            if self.history is not None:  # Redis publishes each message, in offset order
                self.history.use_broker(broker, f"chat:{self.name}", family)
            self.joined.route(broker, family, self._deliver_routed, echo=self.history is not None)

    def _route(self, key: Hashable, event: dict[Any, Any]) -> None:
        """Publish ``event`` (``msg``, ``read``) to the processes with members in ``key``."""
        event["from"] = self.cluster.origin.hex()
        self.cluster.publish(self.joined.topic(key), wire.encode(event))

    def _deliver_routed(self, data: bytes) -> None:
        """A channel's message or read receipt from another process (or, with
        history, a message from Redis: every process's, ours included)."""
        if data[:1] != b"{":  # published by the history script
            assert self.history is not None
            self.history.deliver(data)
            return
        event = wire.decode(data)
        origin = event.get("from")
        if origin == self.cluster.origin.hex():
            return  # ours, echoed (with history the family is routed with echo)
        with self.lock:
            self.replica_event(origin, event)

    # -- hooks (Snorky 0.1's names) ------------------------------------------------
    def get_time(self) -> str:
        """The timestamp put in messages, presence and read notifications
        (ISO 8601 with the UTC offset)."""
        return now_iso()

    def check_identity(self, client: Client) -> None:
        """Raise ``Not authenticated`` unless the connection has an identity."""
        if client.identity is None:
            raise RPCError("Not authenticated")

    def can_join(self, client: Client, channel: Any) -> bool:
        """Hook: may ``client`` (which has an identity) join ``channel`` and
        read it (``join``, with ``since`` or ``recent`` too)?  Default: yes.
        Asked before anything changes, without the service's lock (it may
        wait on a database); a refusal answers ``Not authorized``, tells
        nobody and sends nothing of the channel."""
        return True

    def check_join(self, client: Client, channel: Any) -> None:
        """Raise ``Not authenticated`` / ``Not authorized`` unless ``client``
        may join ``channel``: every way into a channel asks this first."""
        self.check_identity(client)
        if (self.personal_channels and not personal_allows(channel, client.identity)
                or self.namespaces is not None and not self.namespaces.may_subscribe(client, channel)
                or not self.can_join(client, channel)):
            counters["chat_joins_refused"] += 1
            raise RPCError("Not authorized")

    def send_presence(self, channel: Any, client: Client, status: str) -> None:
        """Tell this process's connections in ``channel`` that ``client``'s
        identity ``joined`` or ``left``."""
        chan = self.channels.get(self._key(channel))
        if chan is not None:
            self.broadcast(chan.clients(), {"type": "presence", "from": client.identity,
                                            "channel": channel, "status": status,
                                            "timestamp": self.get_time()})

    def do_leave(self, client: Client, channel: Any) -> None:
        """Make ``client`` leave ``channel`` (as the ``leave`` command; call it
        under ``self.lock``, e.g. to kick a connection)."""
        key = self._key(channel)
        if not self.joined.has(client, key):
            raise RPCError("Not joined")
        self._leave(client, key, channel)

    def _identity(self, client: Client) -> Any:
        self.check_identity(client)
        return client.identity

    def _key(self, channel: Any) -> Any:
        return retained.bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def join(self, req: Request, channel: Any, since: Any = None, recent: Any = None,
             presence: Any = False, meta: Any = None) -> Any:
        history = self.history
        if history is None and (since is not None or recent is not None):
            raise RPCError("History not enabled")
        if recent is not None and (type(recent) is not int or recent < 0):
            raise RPCError("Invalid params")
        state = self.presence_state
        if presence is not False or meta is not None:
            _presence.enabled(state, channel)  # the service's, or the channel's namespace's
            if not isinstance(presence, bool):
                raise RPCError("Invalid params")
        self.check_identity(req.client)  # 0.1's order: Not authenticated, then Channel too long
        self._key(channel)
        kept = state.meta(meta) if state is not None else None
        self.check_join(req.client, channel)  # before it is a member, a history read, presence
        if self.members is None:
            return self._join_now(req, channel, since, recent, presence, kept)
        held = self._hold(channel)  # the members on every process known here first
        try:
            return self._join_now(req, channel, since, recent, presence, kept)
        finally:
            self._release(held)

    def _join_now(self, req: Request, channel: Any, since: Any, recent: Any, presence: Any,
                  kept: Any) -> Any:
        history = self.history
        distributed = self.joined.family is not None  # routed (a distributed broker)
        if history is not None:
            if since is not None and self.joined.has(req.client, self._key(channel)):  # a gap
                return history.recover(req.client, self._key(channel), since, confirm=self._confirm,
                                       gone="Not joined")
            if recent is None and since is None and self.namespaces is not None:
                recent = self.namespaces.of(channel).recent  # a "latest value" namespace
            joined: list[Hashable] = []

            def add() -> tuple[Hashable, dict[str, Any]]:
                key, answer = self._join(req.client, channel, kept, presence)
                joined.append(key)
                return key, answer

            def undo() -> None:  # History unavailable: as if it left (the others saw it come)
                if joined and self.joined.has(req.client, joined[0]):
                    self._leave(req.client, joined[0], channel)
            return history.enter(req.client, add, since, recent, undo=undo, confirm=self._confirm,
                                 gone="Not joined")
        with self.lock:
            key, answer = self._join(req.client, channel, kept, presence)
        if distributed:
            self._confirm(key)
        return answer

    def _hold(self, channel: Any) -> tuple[Hashable, Any]:
        """Before a connection joins ``channel`` (distributed): its members on
        every process known here (the first here subscribes and reads them);
        :meth:`_release` once joined (or refused)."""
        members = self.members
        assert members is not None
        key = self._key(channel)
        with self.lock:
            held = members.hold(key)
        members.wait(held)
        return key, held

    def _release(self, hold: tuple[Hashable, Any]) -> None:
        key, held = hold
        with self.lock:
            assert self.members is not None
            self.members.release(key, held)
            self._drop_if_unused(key)

    def _drop_if_unused(self, key: Hashable) -> None:
        """Forget ``key`` once it has no member here (nor a join under way)."""
        chan = self.channels.get(key)
        if chan is not None and not chan.members and (self.members is None or not self.members.has(key)):
            del self.channels[key]

    def _confirm(self, key: Hashable) -> bool:
        """After a join: wait until messages sent anywhere from now on reach
        this process (True), our presence having reached Redis first."""
        self.cluster.flush()  # our presence reaches Redis before the caller hears back
        if self.members is not None:
            self.members.published(key)
        if self.presence_state is not None:
            self.presence_state.published(key)
        return self.joined.confirm(key)

    def _join(self, client: Client, channel: Any, meta: Any = None,
              watch: bool = False) -> tuple[Any, dict[Any, Any]]:
        """Under the lock: the channel's key and the answer's members (and
        presence entries with ``watch``)."""
        identity = self._identity(client)
        key = self._key(channel)
        state = self.presence_state
        if state is not None:
            state.check_room(client, key)  # before anything changes
        if not self.joined.add(client, key):  # the channel's first member here: routed to us
            raise RPCError("Already joined")
        chan = self.channels.get(key)
        if chan is None:
            chan = self.channels[key] = _Channel(retained.key_value(key))
        ikey = retained.compact_key(_json_key(identity))
        entry = chan.members.get(ikey)
        if entry is None:
            try:
                if ikey not in chan.remote:  # present nowhere yet
                    self.send_presence(channel, client, "joined")
                self.get_time()  # (the hook asked as for the timestamp: raising refuses the join)
            except BaseException:  # a hook raised: not joined
                self.joined.drop(client, key)
                raise
            entry = chan.members[ikey] = (identity, {})
        entry[1][client] = None
        if self.members is not None:  # the others hear of the identity if it is new to them
            self.members.enter(client, key, None, False)
        answer: dict[Any, Any] = {"members": chan.identities()}
        if state is not None:
            entries = state.enter(client, key, meta, watch)
            if entries is not None:
                answer["presence"] = entries
                answer["client"] = state.client_id(client)
        return key, answer

    @rpc_command
    def leave(self, req: Request, channel: Any) -> None:
        self.do_leave(req.client, channel)

    @rpc_command(lock=False)  # with Redis history it calls Redis, without the lock
    def send(self, req: Request, channel: Any, body: Any, idempotency_key: Any = None) -> None:
        if idempotency_key is not None:  # once per key within the window, answered as the first
            key = self._key(channel)
            self.idempotency.once(_idempotency.scope(key, req.client.identity),
                                  idempotency_key, lambda: self.send(req, channel, body),
                                  None if self.history is None else self.history.idempotency_place(key))
            return None
        client = req.client
        history = self.history
        key = self._key(channel)
        if self.namespaces is not None:  # before the lock: a rule may be a function
            if not self.namespaces.may_publish(client, channel, lambda: self.joined.has(client, key)):
                raise RPCError("Not authorized")
        with self.lock:
            if not self.joined.has(client, key):
                raise RPCError("Not joined")
            encoded = orjson.dumps(body)
            if len(encoded) > self.max_message_size:
                raise RPCError("Message too large")
            msg = {"type": "message", "from": client.identity, "channel": channel,
                   "body": orjson.Fragment(encoded), "timestamp": self.get_time()}
            if history is None:
                self.broadcast(self.channels[key].clients(), msg)
                if self.joined.family is not None:
                    self._route(key, {"op": "msg", "c": channel, "m": msg})
                return None
            if not history.distributed:
                frame = history.append(key, msg)
                assert frame is not None  # in this process
                self.broadcast_frame(self.channels[key].clients(), frame)
                return None
        history.append(key, msg)  # Redis assigns the offset and publishes it to every process, in order
        return None

    @rpc_command
    def read(self, req: Request, channel: Any) -> None:
        client = req.client
        identity = self._identity(client)
        key = self._key(channel)
        chan = self.channels.get(key)
        msg = None
        if chan is not None:
            entry = chan.members.get(_json_key(identity))
            if entry is not None:
                others = [c for c in entry[1] if c is not client]
                if others:
                    msg = {"type": "read", "channel": channel, "timestamp": self.get_time()}
                    self.broadcast(others, msg)
        if self.joined.family is not None:  # the identity's connections on other processes
            msg = msg or {"type": "read", "channel": channel, "timestamp": self.get_time()}
            self._route(key, {"op": "read", "c": channel, "i": identity, "m": msg})
        return None

    def _leave(self, client: Client, key: Hashable, channel: Any) -> None:
        self.joined.drop(client, key)  # the last member here: no longer routed to us
        if self.members is not None:
            self.members.leave(client, key)
        if self.presence_state is not None:
            self.presence_state.leave(client, key)
        if self.history is not None:
            self.history.forget(key, client)
        chan = self.channels[key]
        ikey = _json_key(client.identity)
        identity, conns = chan.members[ikey]
        del conns[client]
        if conns:
            return
        del chan.members[ikey]
        if not chan.members:  # (nobody here to tell)
            self._drop_if_unused(key)
            return
        if ikey in chan.remote:  # still present on another process
            return
        self.send_presence(channel, client, "left")

    # -- the other processes' members (Members calls these under self.lock) -------------
    def remote_member(self, key: Hashable, entry: str, identity: Any) -> None:
        """Another process's connection ``entry`` of ``identity`` is in ``key``."""
        chan = self.channels.get(key)
        if chan is None:
            chan = self.channels[key] = _Channel(retained.key_value(key))
        ikey = retained.compact_key(_json_key(identity))
        conns = chan.remote.get(ikey)
        if conns is None:
            if ikey not in chan.members:
                self.broadcast(chan.clients(), {"type": "presence", "from": identity, "channel": chan.value,
                                                "status": "joined", "timestamp": self.get_time()})
            conns = chan.remote[ikey] = (identity, {})
        conns[1][entry] = None

    def remote_gone(self, key: Hashable, entry: str, identity: Any) -> None:
        """Another process's connection ``entry`` of ``identity`` left ``key``
        (or its process is gone)."""
        chan = self.channels.get(key)
        if chan is None:
            return
        ikey = _json_key(identity)
        conns = chan.remote.get(ikey)
        if conns is None:
            return
        conns[1].pop(entry, None)
        if conns[1]:
            return
        del chan.remote[ikey]
        if ikey in chan.members or not chan.members:
            return
        self.broadcast(chan.clients(), {"type": "presence", "from": conns[0], "channel": chan.value,
                                        "status": "left", "timestamp": self.get_time()})

    def replica_event(self, origin: str, event: dict[Any, Any]) -> None:
        op = event.get("op")
        chan = self.channels.get(_json_key(event.get("c")))
        if chan is None:
            return
        if op == "msg":
            self.broadcast(chan.clients(), event["m"])
        elif op == "read":
            entry = chan.members.get(_json_key(event.get("i")))
            if entry is not None:
                self.broadcast(list(entry[1]), event["m"])

    # -- server-side joins (ControlService, connect_channels: ServerChannels) -------------
    def subscribe_client(self, client: Client, channel: Any) -> bool:
        """Join ``client`` to ``channel`` on the server's initiative
        (``control.subscribe``, :meth:`connect_channels`), after the read
        authorization of a page's ``join`` (:meth:`check_join`).  The other
        members are told ``presence`` ``joined`` as for a page's join (on
        every process); the page gets ``{"type": "subscribed", "channel",
        "members"}`` before any message of the channel, in its presence
        (meta null) when the service keeps it.  True when joined now, False
        when it was already (or is gone); RPCError ``Not authenticated``,
        ``Not authorized``, ``Too many channels``, ``Channel too long``,
        ``Presence full`` when refused."""
        key = self._key(channel)
        self.check_join(client, channel)  # before it is a member: nothing reaches it
        if self.members is None:
            return self._subscribe_now(client, channel, key)
        held = self._hold(channel)  # the members on every process known here first
        try:
            return self._subscribe_now(client, channel, key)
        finally:
            self._release(held)

    def _subscribe_now(self, client: Client, channel: Any, key: Hashable) -> bool:
        distributed = self.joined.family is not None  # routed (a distributed broker)
        with self.lock:
            if client not in self.connected or self.joined.has(client, key):
                return False
            _, answer = self._join(client, channel)
            counters["chat_server_joins"] += 1
            # under the lock: before any message of the channel (sends deliver under it)
            self.send_message_to(client, {"type": "subscribed", "channel": channel,
                                          "members": answer["members"]})
        if distributed:
            self._confirm(key)  # our presence reached Redis; messages sent from now on reach it
        if self.presence_state is not None:
            self.presence_state.published(key)
        return True

    def unsubscribe_client(self, client: Client, channel: Any) -> bool:
        """Take ``client`` out of ``channel`` on the server's initiative, as its
        ``leave`` would (the others are told ``left`` when it was the
        identity's last connection there); the page gets ``{"type":
        "unsubscribed", "channel"}``.  False when it was not in it."""
        key = self._key(channel)
        with self.lock:
            if not self.joined.has(client, key):
                return False
            self._leave(client, key, self.channels[key].value)
            self.send_message_to(client, {"type": "unsubscribed", "channel": channel})
        if self.joined.family is not None:
            self.cluster.flush()
            if self.members is not None:
                self.members.published(key)
        return True

    def client_disconnected(self, client: Client) -> None:
        with self.lock:
            self.connected.discard(client)
            for key in list(self.joined.keys_of(client)):
                self._leave(client, key, self.channels[key].value)
            if self.history is not None:
                self.history.forget_client(client)

"""Chat with presence (PROTOCOL.md §3).

Connections join channels; presence counts identities, not connections: a
user with two tabs joins once (``presence: joined`` when their first
connection joins) and leaves once (``left`` when their last one leaves).
Every connection needs an identity (the endpoint's ``authenticate`` hook).

With a distributed broker (Redis) presence is global: each process announces
"identity X is in channel C here" when X's first local connection joins C
and withdraws it when the last one leaves (:class:`~.replica.Replica`);
every process counts an identity present while it has a connection on any
process, and tells its own connections ``joined`` / ``left`` on the
transitions.  Messages and read receipts are routed to every process.  A
process that stops heartbeating is dropped by the others, whose
connections then see ``left`` for the identities only it had.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from .. import wire
from ..brokers.base import BrokerUnavailable, channel_topic
from ..metrics import counters
from . import history as _history
from . import retained
from .base import RPCError, RPCService, rpc_command
from .replica import Replica

__all__ = ["ChatService"]

_json_key = wire.json_key


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset."""
    return datetime.now(timezone.utc).isoformat()


class _Channel:
    __slots__ = ("members", "remote", "value")

    def __init__(self, value: Any) -> None:
        self.value = value  # as kept (retained.key_value): the string, or its JSON
        # identity key -> (identity, {client: None}): this process's connections
        self.members: dict[Any, tuple[Any, dict]] = {}
        # identity key -> (identity, {origin: None}): other processes having it here
        self.remote: dict[Any, tuple[Any, dict]] = {}

    def identities(self) -> list:
        out = [ident for ident, _ in self.members.values()]
        out.extend(ident for k, (ident, _) in self.remote.items() if k not in self.members)
        return out

    def clients(self):
        for _, conns in self.members.values():
            yield from conns


class ChatService(RPCService):
    """``join``, ``leave``, ``send``, ``read``; limits ``max_channels`` per
    connection and ``max_channel_size`` bytes of JSON per channel.

    With ``history_size`` (off by default: 0.1's frames) each channel keeps
    its last messages (:mod:`.history`): messages carry ``offset`` and
    ``epoch``; ``join`` answers them next to ``members``; ``join({channel,
    since})`` replays the messages missed since then before answering (with
    ``recovered``), ``join({channel, recent: n})`` the last ``n`` messages.
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_channels = 1000
    """Channels joined per connection (``Too many channels``)."""
    max_channel_size = 1024
    """Bytes of JSON of a channel name (``Channel too long``)."""
    max_message_size = 64 * 1024
    """Bytes of JSON of a message's ``body`` (``Message too large``); with
    history, each channel keeps ``history_size`` of them."""

    def __init__(self, name: str, history_size: int = 0, history_ttl: float = 300.0) -> None:
        """``history_size``: messages kept per channel (0: none, 0.1's frames);
        ``history_ttl``: seconds a channel's history lives after its last message."""
        super().__init__(name)
        if not isinstance(history_size, int) or history_size < 0:
            raise TypeError(f"ChatService(history_size=...) is a count >= 0, got {history_size!r}")
        if not isinstance(history_ttl, (int, float)) or history_ttl <= 0:
            raise TypeError(f"ChatService(history_ttl=...) is seconds > 0, got {history_ttl!r}")
        self.channels: dict[Any, _Channel] = {}
        self.client_channels: dict[Any, dict[Any, Any]] = {}  # client -> {channel key: channel value}
        self.replica: Replica | None = None
        self.history_size = history_size
        self.history_ttl = float(history_ttl)
        self.history: _history.LocalHistory | _history.RedisHistory | None = (
            _history.LocalHistory(history_size, self.history_ttl) if history_size else None)
        self.gate = _history.LiveGate()

    #: the broker's routed family of this service's channels (distributed broker only)
    _family: str | None = None

    def use_broker(self, broker) -> None:
        """With a distributed broker, presence is replicated to every process
        (:class:`~.replica.Replica`, so ``join`` can answer the members), and
        messages and read receipts are routed per channel
        (:meth:`~snorky_sync.brokers.base.Broker.route`): only to the
        processes that have a member of the channel."""
        super().use_broker(broker)
        if broker.distributed:
            self.replica = Replica(self, broker, f"chat:{self.name}")
            family = self._family = f"chatmsg:{self.name}"
            if self.history is not None:
                self.history = _history.RedisHistory(broker, f"chat:{self.name}", family,
                                                     self.history_size, self.history_ttl)
            broker.route(family, self._deliver_routed, echo=self.history is not None)

    def _topic(self, key) -> str:
        assert self._family is not None
        return channel_topic(self._family, wire.key_to_bytes(key))

    def _route(self, key, event: dict) -> None:
        """Publish ``event`` (``msg``, ``read``) to the processes with members in ``key``."""
        event["from"] = self.cluster.origin.hex()
        self.cluster.publish(self._topic(key), wire.encode(event))

    def _deliver_routed(self, data: bytes) -> None:
        """A channel's message or read receipt from another process (or, with
        history, a message from Redis: every process's, ours included)."""
        if data[:1] != b"{":  # published by the history script
            self._deliver_history(data)
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

    def check_identity(self, client) -> None:
        """Raise ``Not authenticated`` unless the connection has an identity."""
        if client.identity is None:
            raise RPCError("Not authenticated")

    def send_presence(self, channel: Any, client, status: str) -> None:
        """Tell this process's connections in ``channel`` that ``client``'s
        identity ``joined`` or ``left``."""
        chan = self.channels.get(self._key(channel))
        if chan is not None:
            self.broadcast(chan.clients(), {"type": "presence", "from": client.identity,
                                            "channel": channel, "status": status,
                                            "timestamp": self.get_time()})

    def do_leave(self, client, channel: Any) -> None:
        """Make ``client`` leave ``channel`` (as the ``leave`` command; call it
        under ``self.lock``, e.g. to kick a connection)."""
        key = self._key(channel)
        mine = self.client_channels.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        self._leave(client, key, channel)

    def _identity(self, client) -> Any:
        self.check_identity(client)
        return client.identity

    def _key(self, channel: Any) -> Any:
        return retained.bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def join(self, req, channel, since=None, recent=None):
        history = self.history
        if history is None and (since is not None or recent is not None):
            raise RPCError("History not enabled")
        if recent is not None and (type(recent) is not int or recent < 0):
            raise RPCError("Invalid params")
        if self.replica is None:
            with self.lock:
                answer = self._join(req, channel)
                if history is not None:
                    current, epoch, entries = history.read(self._key(channel))
                    self._replay(req.client, answer, since, recent, current, epoch, entries)
                return answer
        self.broker.barrier()  # members joined elsewhere before this call are known here
        with self.lock:
            answer = self._join(req, channel)
            key = self._key(channel)
            if history is not None:
                self.gate.hold(key, req.client)
        self.broker.flush()  # our presence reaches Redis before the caller hears back
        # messages sent anywhere from now on reach this process
        confirmed = self.cluster.confirm(self._topic(key))
        if history is None:
            return answer
        try:
            if not confirmed:  # live messages would not reach us: the read could miss some
                raise BrokerUnavailable("subscription not confirmed")
            current, epoch, entries = history.read(key)
        except BrokerUnavailable:
            with self.lock:
                self.gate.forget(key, req.client)
            counters["chat_history_unavailable"] += 1
            raise RPCError("History unavailable") from None
        with self.lock:
            held = self.gate.release(key, req.client)
            if held is None:  # left meanwhile
                raise RPCError("Not joined")
            self._replay(req.client, answer, since, recent, current, epoch, entries)
            answer["offset"] = _history.send_newer(req.client, held, current, self.gate, key)
        return answer

    @staticmethod
    def _replay(client, answer: dict, since, recent, current: int, epoch: str, entries) -> None:
        if since is None and recent:  # a page opening the room: its last lines
            for frame in _history.frames(entries[-recent:]):
                client.send_frame(frame)
        answer.update(_history.replay(client, since, current, epoch, entries, "chat"))

    def _deliver_history(self, data: bytes) -> None:
        """A chat message with history, from Redis (every process's, ours included)."""
        key, offset, env = _history.RedisHistory.unpack(data)
        frame = wire.frame_text(env)
        with self.lock:
            chan = self.channels.get(key)
            if chan is not None:
                self.broadcast_frame(self.gate.recipients(key, offset, frame, chan.clients()), frame)

    def _join(self, req, channel):
        client = req.client
        identity = self._identity(client)
        key = self._key(channel)
        mine = self.client_channels.get(client)
        if mine is not None and key in mine:
            raise RPCError("Already joined")
        if mine is not None and len(mine) >= self.max_channels:
            raise RPCError("Too many channels")
        chan = self.channels.get(key)
        if chan is None:
            chan = self.channels[key] = _Channel(retained.key_value(key))
        ikey = retained.compact_key(_json_key(identity))
        entry = chan.members.get(ikey)
        if entry is None:
            if not chan.members and self._family is not None:  # the channel's first member here
                self.cluster.want(self._topic(key))
            if ikey not in chan.remote:  # present nowhere yet
                self.send_presence(channel, client, "joined")
            ts = self.get_time()
            entry = chan.members[ikey] = (identity, {})
            if self.replica is not None:
                self.replica.add([chan.value, identity, ts])
        entry[1][client] = None
        self.client_channels.setdefault(client, {})[key] = chan.value
        return {"members": chan.identities()}

    @rpc_command
    def leave(self, req, channel):
        self.do_leave(req.client, channel)

    @rpc_command(lock=False)  # with Redis history it calls Redis, without the lock
    def send(self, req, channel, body):
        client = req.client
        history = self.history
        with self.lock:
            key = self._key(channel)
            mine = self.client_channels.get(client)
            if mine is None or key not in mine:
                raise RPCError("Not joined")
            encoded = orjson.dumps(body)
            if len(encoded) > self.max_message_size:
                raise RPCError("Message too large")
            msg = {"type": "message", "from": client.identity, "channel": channel,
                   "body": orjson.Fragment(encoded), "timestamp": self.get_time()}
            if history is None:
                self.broadcast(self.channels[key].clients(), msg)
                if self._family is not None:
                    self._route(key, {"op": "msg", "c": channel, "m": msg})
                return None
            head = _history.envelope_head(self.name, msg)
            if isinstance(history, _history.LocalHistory):
                _, _, env = history.append(key, head)
                self.broadcast_frame(self.channels[key].clients(), wire.frame_text(env))
                return None
        try:  # Redis assigns the offset and publishes it to every process, in order
            history.append(key, head)
        except BrokerUnavailable:
            counters["chat_history_unavailable"] += 1
            raise RPCError("History unavailable") from None
        return None

    @rpc_command
    def read(self, req, channel):
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
        if self._family is not None:  # the identity's connections on other processes
            msg = msg or {"type": "read", "channel": channel, "timestamp": self.get_time()}
            self._route(key, {"op": "read", "c": channel, "i": identity, "m": msg})
        return None

    def _leave(self, client, key, channel) -> None:
        mine = self.client_channels[client]
        del mine[key]
        if not mine:
            del self.client_channels[client]
        chan = self.channels[key]
        ikey = _json_key(client.identity)
        identity, conns = chan.members[ikey]
        del conns[client]
        if conns:
            return
        del chan.members[ikey]
        ts = self.get_time()
        if self.replica is not None:
            self.replica.delete([channel, identity, ts])
        if not chan.members:
            if self._family is not None:  # its last member here left
                self.cluster.unwant(self._topic(key))
            if not chan.remote:
                del self.channels[key]
            return
        if ikey in chan.remote:  # still present on another process
            return
        self.send_presence(channel, client, "left")

    # -- replication (Replica calls these under self.lock) -----------------------------
    @staticmethod
    def fact_key(fact) -> tuple:
        return (retained.compact_key(_json_key(fact[0])), retained.compact_key(_json_key(fact[1])))

    def local_facts(self) -> list:
        ts = self.get_time()
        return [[chan.value, ident, ts] for chan in self.channels.values()
                for ident, _ in chan.members.values()]

    def remote_set(self, origin: str, key: tuple, fact: list, old) -> None:
        if old is not None:
            return  # already known (a snapshot repeating it)
        ckey, ikey = key
        fact[0] = retained.key_value(ckey)  # kept as JSON, not as the parsed objects
        channel, identity, ts = fact
        chan = self.channels.get(ckey)
        if chan is None:
            chan = self.channels[ckey] = _Channel(channel)
        entry = chan.remote.get(ikey)
        if entry is None:
            if ikey not in chan.members:
                self.broadcast(chan.clients(), {"type": "presence", "from": identity, "channel": channel,
                                                "status": "joined", "timestamp": ts})
            entry = chan.remote[ikey] = (identity, {})
        entry[1][origin] = None

    def remote_del(self, origin: str, key: tuple, fact: list, event) -> None:
        ckey, ikey = key
        chan = self.channels.get(ckey)
        if chan is None:
            return
        entry = chan.remote.get(ikey)
        if entry is None:
            return
        entry[1].pop(origin, None)
        if entry[1]:
            return
        del chan.remote[ikey]
        if ikey in chan.members:
            return
        if not chan.members:
            if not chan.remote:
                del self.channels[ckey]
            return
        ts = event[2] if event is not None else self.get_time()
        self.broadcast(chan.clients(), {"type": "presence", "from": entry[0], "channel": chan.value,
                                        "status": "left", "timestamp": ts})

    def replica_event(self, origin: str, event: dict) -> None:
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

    def client_disconnected(self, client) -> None:
        with self.lock:
            for key, channel in list(self.client_channels.get(client, {}).items()):
                self._leave(client, key, channel)
            self.gate.forget_client(client)

"""Presence with metadata: who is in a channel, connection by connection.

PubSub and Chat keep it for the channels of a service created with
``presence=True`` (Phoenix Presence's "metas", Centrifugo's presence), or
of a namespace created with ``presence=True`` (:mod:`.namespaces`: one
created with ``presence=False`` keeps none, whatever the service says).
For a channel that keeps none, ``subscribe`` / ``join`` with ``presence``
or ``meta``, ``updatePresence``, ``presence``, ``presenceStats`` and the
backend's ``control.presence`` / ``presenceStats`` answer ``Presence not
enabled`` and its subscribers are in no presence.
Every connection in a channel (subscribed, joined) is one *entry*::

    {"client": "3f9c0a1b2c4d.17", "identity": "alice", "meta": {"status": "away"}}

``client`` names the connection (unique across processes, stable while it
stays connected), ``identity`` is its identity (null when anonymous) and
``meta`` whatever the page gave at ``subscribe`` / ``join`` (``meta``) or
last with ``updatePresence`` (null by default).  A connection that asked
for it (``presence: true`` at subscribe / join) receives the channel's
entries in the answer and then every change as a notification::

    {"type": "presenceChange", "channel": C, "event": "join" | "update" | "leave",
     "client": ..., "identity": ..., "meta": ...}

(not its own: it knows them from its answers).  ``presence({channel})`` and
``presenceStats({channel})`` answer the entries and the counts
(``{"clients": n, "users": m}``, ``users`` counting distinct non-null
identities) to a member of the channel; the backend asks the same through
:class:`~.control.ControlService`.  Nothing of it reaches a connection that
did not ask: Snorky 0.1's frames are unchanged.

Bounds (attributes of the service, constructor keywords, settings once
mounted): ``max_presence_entries`` per channel (a connection over it is
refused with ``Presence full``) and ``max_presence_meta_size`` bytes of JSON
of one ``meta`` (``Presence metadata too large``).

With a distributed broker a channel's presence lives on the channel's own
Redis shard and travels there, to the processes with a member of the
channel only (:mod:`.presence_routing`): each process is the author of its
own connections' entries and writes them to the channel's hash, which
publishes the change on the channel's presence topic; a process with
members of the channel keeps its entries (read once subscribed, then kept
by the changes) for the notifications, the answers and ``Presence full``,
and a query (a page's, the backend's from any process) reads the hash.  A
change reaches Redis before the page that made it hears back.  A process
that stops heartbeating is dropped by the others after the cluster expiry
(``SNORKY_CLUSTER_EXPIRY``): its entries leave (``leave`` notifications).
``max_presence_entries`` is checked against this process's view, so
processes joining the same channel at the same instant may pass it by a few.
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any, cast

from .. import wire
from ..metrics import counters
from . import retained
from .base import RPCError
from .presence_routing import PresenceRouting

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..brokers.sharded import RedisLike
    from ..client import Client
    from .base import Service

__all__ = ["Presence", "PRESENCE_FULL", "META_TOO_LARGE", "NOT_ENABLED", "configured", "enabled"]

#: refusal texts
PRESENCE_FULL = "Presence full"
META_TOO_LARGE = "Presence metadata too large"
NOT_ENABLED = "Presence not enabled"

_json_key = wire.json_key


class _Entry:
    __slots__ = ("client", "identity", "meta", "origin")

    def __init__(self, client: str, identity: Any, meta: Any, origin: str | None = None) -> None:
        self.client = client      # the connection's presence id
        self.identity = identity
        self.meta = meta          # as kept: a scalar, or its JSON as an orjson.Fragment
        self.origin = origin      # another process's entry: that process (hex)

    def view(self) -> dict[str, Any]:
        return {"client": self.client, "identity": self.identity, "meta": self.meta}


class _Channel:
    __slots__ = ("value", "local", "remote", "watchers", "pending")

    def __init__(self, value: Any) -> None:
        self.value = value                          # retained.key_value of its key
        self.local: dict[Client, _Entry] = {}       # this process's connections
        self.remote: dict[str, _Entry] = {}         # presence id -> entry, other processes'
        self.watchers: dict[Client, None] = {}      # local connections told of changes
        self.pending: dict[Client, list[Any]] = {}  # watchers whose answer waits for the read

    def __len__(self) -> int:
        return len(self.local) + len(self.remote)

    def entries(self) -> Iterator[_Entry]:
        yield from self.local.values()
        yield from self.remote.values()

    def unused(self) -> bool:
        # (other processes' entries are kept only while this one has some)
        return not self.local and not self.watchers


def kept_meta(meta: Any, max_size: int) -> Any:
    """``meta`` as kept (:func:`~.retained.bounded_json`), or
    ``RPCError("Presence metadata too large")`` over ``max_size`` bytes of JSON."""
    try:
        stored, data = retained.bounded_json(meta)
    except TypeError:
        raise RPCError("Invalid params") from None
    if len(data) > max_size:
        counters["presence_refused"] += 1
        raise RPCError(META_TOO_LARGE)
    return stored


def configured(service: Service, presence: bool, namespaces: Any) -> Presence | None:
    """The presence of ``service`` (created with ``presence``, and
    ``namespaces``: its :class:`~.namespaces.Namespaces` or None): a
    :class:`Presence` when the service or any namespace turns it on, else None."""
    if presence or (namespaces is not None and namespaces.wants_presence()):
        return Presence(service, presence)
    return None


def enabled(state: Presence | None, channel: Any) -> Presence:
    """``state``, when it keeps ``channel``'s presence; else
    ``RPCError("Presence not enabled")``."""
    if state is None or not state.on(channel):
        raise RPCError(NOT_ENABLED)
    return state


class Presence:
    """The presence of ``service``'s channels (see the module).

    The service calls :meth:`enter`, :meth:`update`, :meth:`leave` under its
    lock, with the channel's key (:func:`~.retained.bounded_key`); it reads
    its limits from the service's ``max_presence_entries`` and
    ``max_presence_meta_size``.  ``default``: whether a channel keeps
    presence when its namespace (the service's ``namespaces``) says nothing;
    :meth:`enter` and :meth:`check_room` ignore a channel that keeps none.
    """

    def __init__(self, service: Service, default: bool = True) -> None:
        self.service = service
        self.default = default
        self.lock = service.lock
        self.prefix = os.urandom(6).hex()  # this instance's connections: PREFIX.N
        self.channels: dict[Hashable, _Channel] = {}
        self.routing: PresenceRouting | None = None

    def __repr__(self) -> str:
        return f"<Presence of {self.service!r}: {len(self.channels)} channels>"

    def use_broker(self, broker: Broker, family: str) -> None:
        """Across processes (a distributed ``broker``): each channel's presence
        on the shard of its messages, the routed ``family``'s channel topic."""
        if broker.distributed and self.routing is None:
            self.routing = PresenceRouting(self, cast("RedisLike", broker), family)

    @property
    def distributed(self) -> bool:
        return self.routing is not None

    def on(self, channel: Any) -> bool:
        """Does ``channel`` (or its key) keep presence?  Its namespace says,
        else :attr:`default`."""
        namespaces = getattr(self.service, "namespaces", None)
        if namespaces is None:
            return self.default
        return bool(namespaces.presence_of(channel, self.default))

    def client_id(self, client: Client) -> str:
        """``client``'s presence id (the entries' ``client``)."""
        return f"{self.prefix}.{client.id}"

    def meta(self, meta: Any) -> Any:
        """``meta`` checked against the service's ``max_presence_meta_size``, as kept."""
        return kept_meta(meta, self.service.max_presence_meta_size)  # type: ignore[attr-defined]

    # -- this process's connections (under the service's lock) ----------------------------
    def check_room(self, client: Client, key: Hashable) -> None:
        """``Presence full`` unless ``client`` may enter ``key``'s presence:
        called before it becomes a member, so a refusal changes nothing."""
        if not self.on(key):
            return
        chan = self.channels.get(key)
        if (chan is not None and client not in chan.local
                and len(chan) >= self.service.max_presence_entries):  # type: ignore[attr-defined]
            counters["presence_refused"] += 1
            raise RPCError(PRESENCE_FULL)

    def enter(self, client: Client, key: Hashable, meta: Any, watch: bool) -> list[dict[str, Any]] | None:
        """``client`` is in ``key`` with ``meta`` (kept form): the watchers are
        told ``join``; with ``watch`` it is told of changes from now on and
        gets the entries (itself included), else None.  Nothing for a
        channel that keeps no presence (:meth:`on`)."""
        if not self.on(key):
            return None
        chan = self.channels.get(key)
        routing = self.routing
        if chan is None:
            chan = self.channels[key] = _Channel(retained.key_value(key))
            if routing is not None:  # the first here: subscribe, read the others' entries
                routing.interest(key, chan)
        entry = chan.local.get(client)
        if entry is None:
            entry = chan.local[client] = _Entry(self.client_id(client), client.identity, meta)
            self._notify(chan, "join", entry, but=client)
            if routing is not None:
                routing.write(key, entry.client, entry.identity, entry.meta, chan.value)
        if not watch:
            return None
        chan.watchers[client] = None
        answer = [e.view() for e in chan.entries()]
        if routing is not None and chan in routing.loading:
            chan.pending[client] = answer  # completed once read (published() waits)
        return answer

    def update(self, client: Client, key: Hashable, meta: Any) -> bool:
        """Replace ``client``'s meta in ``key``: False if it has no entry there."""
        chan = self.channels.get(key)
        entry = chan.local.get(client) if chan is not None else None
        if chan is None or entry is None:
            return False
        entry.meta = meta
        self._notify(chan, "update", entry, but=client)
        if self.routing is not None:
            self.routing.write(key, entry.client, entry.identity, meta, chan.value)
        return True

    def leave(self, client: Client, key: Hashable) -> None:
        """``client`` left ``key`` (the watchers are told ``leave``)."""
        chan = self.channels.get(key)
        if chan is None:
            return
        chan.watchers.pop(client, None)
        chan.pending.pop(client, None)
        entry = chan.local.pop(client, None)
        if entry is not None:
            self._notify(chan, "leave", entry, but=client)
            if self.routing is not None:
                self.routing.erase(key, entry.client, chan.value)
        if chan.unused():
            del self.channels[key]
            if self.routing is not None:
                self.routing.uninterest(key, chan)

    def _notify(self, chan: _Channel, event: str, entry: _Entry, but: Client | None = None) -> None:
        watchers = chan.watchers
        if not watchers or (len(watchers) == 1 and but in watchers):
            return
        pending = chan.pending  # (their answer will list it)
        self.service.broadcast([c for c in watchers if c is not but and c not in pending], {
            "type": "presenceChange", "channel": chan.value, "event": event,
            "client": entry.client, "identity": entry.identity, "meta": entry.meta})

    # -- reading ------------------------------------------------------------------------
    def entries(self, key: Hashable) -> list[dict[str, Any]]:
        """``key``'s entries, every process's (under the lock)."""
        chan = self.channels.get(key)
        return [e.view() for e in chan.entries()] if chan is not None else []

    def stats(self, key: Hashable) -> dict[str, int]:
        """``{"clients": n, "users": m}`` of ``key`` (under the lock)."""
        chan = self.channels.get(key)
        if chan is None:
            return {"clients": 0, "users": 0}
        users = {_json_key(e.identity) for e in chan.entries() if e.identity is not None}
        return {"clients": len(chan), "users": len(users)}

    def key(self, channel: Any) -> Hashable:
        """``channel``'s key in the service (``Channel too long`` past its
        ``max_channel_size``; ``Presence not enabled`` when it keeps none)."""
        enabled(self, channel)
        return retained.bounded_key(channel, self.service.max_channel_size,  # type: ignore[attr-defined]
                                    "Channel too long")

    def read_entries(self, key: Hashable) -> list[dict[str, Any]]:
        """:meth:`entries` as every process has them (without the lock held):
        with a distributed broker read from Redis, from any process (this
        process's view when Redis cannot answer)."""
        found = self.routing.read(key) if self.routing is not None else None
        if found is None:
            with self.lock:
                return self.entries(key)
        return [{"client": c, "identity": identity, "meta": meta} for c, _, identity, meta in found]

    def read_stats(self, key: Hashable) -> dict[str, int]:
        """:meth:`stats` as :meth:`read_entries` reads."""
        found = self.routing.read(key) if self.routing is not None else None
        if found is None:
            with self.lock:
                return self.stats(key)
        users = {_json_key(identity) for _, _, identity, _ in found if identity is not None}
        return {"clients": len(found), "users": len(users)}

    def published(self, key: Hashable | None = None) -> None:
        """After a change (without the lock): it has reached Redis, and the
        channel ``key`` (None: every channel) this process just entered was
        read (the answers listing its entries are complete), before the
        caller hears back."""
        if self.routing is not None:
            self.routing.flush()
            if key is None:
                self.routing.wait_loaded()
            else:
                chan = self.channels.get(key)
                if chan is not None:
                    self.routing.wait_loaded(chan)

    # -- the other processes' entries (PresenceRouting calls these under the lock) ----------
    def remote_set(self, chan: _Channel, cid: str, origin: str, identity: Any, meta: Any) -> None:
        """Another process's entry ``cid`` of ``chan`` is (now) ``identity``/``meta``."""
        kept = retained.bounded_json(meta)[0]
        entry = chan.remote.get(cid)
        if entry is None:
            entry = chan.remote[cid] = _Entry(cid, identity, kept, origin)
            self._notify(chan, "join", entry)
        elif wire.encode(entry.meta) != wire.encode(kept):
            entry.meta = kept
            self._notify(chan, "update", entry)

    def remote_del(self, chan: _Channel, cid: str) -> None:
        """Another process's entry ``cid`` of ``chan`` left."""
        entry = chan.remote.pop(cid, None)
        if entry is not None:
            self._notify(chan, "leave", entry)

    def loaded(self, chan: _Channel) -> None:
        """``chan`` was read: the answers waiting for it list its entries."""
        if chan.pending:
            entries = [e.view() for e in chan.entries()]
            for answer in chan.pending.values():
                answer[:] = entries
            chan.pending.clear()

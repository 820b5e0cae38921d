"""Presence across processes, per channel, on the channel's own shard.

:class:`~.presence.Presence` with a distributed broker hands its cluster
side to a :class:`PresenceRouting`.  A channel's presence lives in Redis on
the shard of the channel (:mod:`~snorky_sync.brokers.placement`: where its
messages and history are), and its changes travel on a topic of its own
there, routed by interest like the channel's messages: only the processes
with a local member of the channel receive them.

* State: one hash per channel, ``snorky:presence:<topic>``, one field per
  entry (the entry's ``client``), valued ``<origin hex><[identity, meta]>``:
  the process that holds the connection, then the entry.
* Changes: a Lua script writes the hash and publishes the change on the
  channel's presence topic (``presence:NAME:<32 hex>``, placed with the
  channel's message topic) in one step, so the hash and the stream of
  changes agree.  A process writes its own entries only, from one writer
  greenlet, pipelined per shard and in order, never under the service lock.
* Interest: a process subscribes to a channel's presence topic when the
  channel's first local entry arrives and unsubscribes when its last one
  leaves (the broker's routing: batched, lingering).  Once subscribed
  (confirmed by Redis) it reads the hash; the same script publishes a marker
  on the topic, so the read takes its place in the stream of changes:
  changes before the marker are in the read, the ones after it are applied
  on top.  Until then a page's answer waits (:meth:`~.presence.Presence.published`).
* Queries (``presence``, ``presenceStats``, the backend's) read the hash,
  from any process, interested or not.
* Dead processes: the read skips (and deletes) the entries of an origin whose
  liveness key (``snorky:proc:<origin>``, on every shard) expired; a process
  told a peer is gone drops its entries from its channels (``leave``
  notifications) and deletes them from the hashes.
* Faults: when a shard comes back (``channels_reconnected``) each process
  writes its entries of the channels placed there again (a restarted Redis
  holds nothing) and reads those channels again; pages may see a ``leave``
  and ``join`` of an entry whose process had not written it yet.
  With Redis unreachable a query answers this process's view.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from .. import wire
from ..brokers.base import BrokerUnavailable, PeerListener, channel_topic
from ..metrics import counters
from . import retained

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.sharded import RedisLike
    from .presence import Presence, _Channel

__all__ = ["PresenceRouting"]

log = logging.getLogger("snorky_sync.services.presence")

_PROC = "snorky:proc:"
_KEY = "snorky:presence:"
_MARK_ORIGIN = b"\0" * 8  # a read's marker: not any process's own (the broker drops those)

# The publish command is an argument (PUBLISH; SPUBLISH in a Redis Cluster), and so
# are the liveness keys (not declared: in a Redis Cluster they are in the node's
# slot, not the hash's; ARGV carries what follows ``snorky:proc:<origin>`` there).
# KEYS: hash; ARGV: field, value, wire channel, wire message, liveness TTL ms,
# my liveness key, publish command
_SET = """
redis.call('SET', ARGV[6], '1', 'PX', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call(ARGV[7], ARGV[3], ARGV[4])
return 1
"""
# KEYS: hash; ARGV: field, wire channel ('': publish nothing), wire message, publish command
_DEL = """
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call(ARGV[4], ARGV[2], ARGV[3]) end
return 1
"""
# KEYS: hash; ARGV: wire channel ('': no marker), marker, liveness keys' suffix, publish
# command.  The live entries (field, value, ...); an entry whose process's
# liveness key expired is deleted.
_READ = """
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  if redis.call('EXISTS', '""" + _PROC + """' .. string.sub(v, 1, 16) .. ARGV[3]) == 1 then
    out[#out + 1] = all[i]
    out[#out + 1] = v
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if ARGV[1] ~= '' then redis.call(ARGV[4], ARGV[1], ARGV[2]) end
return out
"""

#: a read entry: (client, origin hex, identity, meta as decoded)
Found = tuple[str, str, Any, Any]


class _Load:
    """A channel being read (after its subscription was confirmed)."""

    __slots__ = ("seq", "key", "chan", "result", "marked", "held")

    def __init__(self, seq: int, key: Hashable, chan: _Channel) -> None:
        self.seq = seq
        self.key = key
        self.chan = chan
        self.result: list[Any] | None = None   # the read, once back
        self.marked = False                    # its marker dispatched (before the read came back)
        self.held: list[dict[str, Any]] = []   # changes after the marker, while marked


class PresenceRouting(PeerListener):
    """The cluster side of ``presence`` (see the module); ``family`` is the
    routed family of the service's channel messages (the placement).

    ``own_family``: the family of the changes' topics (``presence:NAME`` by
    default).  Cursors routes its documents' cursors with this class too
    (:mod:`.cursors_routing`: a cursor is an entry, its document the channel),
    with ``own_family`` its documents' family, placed by itself."""

    def __init__(self, presence: Presence, broker: RedisLike, family: str,
                 own_family: str | None = None) -> None:
        self.presence = presence
        self.broker = broker
        self.family = family
        self.own_family = own_family or f"presence:{presence.service.name}"
        self.origin = broker.origin.hex()
        self.ttl_ms = max(1, int(broker.peer_expiry * 1000))
        redis = broker.client_for("")  # where the scripts are registered (run on any shard)
        self._set = redis.register_script(_SET)
        self._del = redis.register_script(_DEL)
        self._read = redis.register_script(_READ)
        self._read_now = broker.script(_READ)
        self._ops: list[tuple[str, list[str], list[Any], Callable[[Any], None] | None]] = []
        self._places: list[str] = []
        self._writer: gevent.Greenlet | None = None
        self._queued_done = gevent.event.Event()    # set once the changes queued now are written
        self._writing_done: gevent.event.Event | None = None  # ... those being written
        self._seq = 0
        self._loads: dict[int, _Load] = {}
        self._holding: dict[_Channel, _Load] = {}  # marker seen, read not back yet: changes held
        self.loading: dict[_Channel, gevent.event.Event] = {}
        broker.route(self.own_family, self._on_message,
                     placed_with=family if family != self.own_family else None)
        broker.add_listener(self)

    # -- names -----------------------------------------------------------------------
    def place(self, key: Hashable) -> str:
        """The channel's message topic: what its presence is placed by."""
        return channel_topic(self.family, wire.key_to_bytes(key))

    def topic(self, key: Hashable) -> str:
        """The channel's presence topic (``presence:NAME:<the message topic's hex>``)."""
        return f"{self.own_family}:{self.place(key).rpartition(':')[2]}"

    def hash_key(self, key: Hashable) -> str:
        """The Redis hash of ``key``'s entries (in a Redis Cluster, in its channel's slot)."""
        name = _KEY + self.topic(key)
        tagged = getattr(self.broker, "tagged_key", None)
        return name if tagged is None else str(tagged(name, self.place(key)))

    def _suffix(self, key: Hashable) -> str:
        """What follows ``snorky:proc:<origin>`` in the liveness keys next to ``key``'s hash."""
        suffix = getattr(self.broker, "liveness_suffix_for", None)
        return "" if suffix is None else str(suffix(self.hash_key(key)))

    @property
    def _publish(self) -> str:
        return str(getattr(self.broker, "publish_command", "PUBLISH"))

    # -- this process's entries (under the service's lock) ---------------------------------
    def interest(self, key: Hashable, chan: _Channel) -> None:
        """``key``'s first local entry arrived (``chan`` is new): subscribe and load."""
        self.broker.want(self.topic(key))
        self.loading[chan] = gevent.event.Event()
        gevent.spawn(self._load, key, chan)

    def uninterest(self, key: Hashable, chan: _Channel) -> None:
        """``key``'s last local entry left (``chan`` is dropped)."""
        self.broker.unwant(self.topic(key))
        event = self.loading.pop(chan, None)
        if event is not None:
            event.set()

    def write(self, key: Hashable, client: str, identity: Any, meta: Any, value: Any) -> None:
        """Our entry ``client`` of ``key`` is (now) ``identity``/``meta``."""
        topic = self.topic(key)
        channel, message = self.broker.wire_publish(topic, wire.encode(
            {"op": "add", "c": value, "client": client, "identity": identity, "meta": meta, "o": self.origin}))
        stored = self.origin.encode() + wire.encode([identity, meta])
        self._queue("set", [self.hash_key(key)], [client, stored, channel, message, self.ttl_ms,
                                                  _PROC + self.origin + self._suffix(key), self._publish],
                    None, self.place(key))

    def erase(self, key: Hashable, client: str, value: Any, tell: bool = True) -> None:
        """Our entry ``client`` of ``key`` left (``tell``: the others hear ``leave``)."""
        topic = self.topic(key)
        if tell:
            channel, message = self.broker.wire_publish(topic, wire.encode(
                {"op": "del", "c": value, "client": client, "o": self.origin}))
        else:
            channel, message = "", b""
        self._queue("del", [self.hash_key(key)], [client, channel, message, self._publish], None,
                    self.place(key))

    # -- the writer ------------------------------------------------------------------
    def _queue(self, kind: str, keys: list[str], args: list[Any], done: Callable[[Any], None] | None,
               place: str) -> None:
        self._ops.append((kind, keys, args, done))
        self._places.append(place)
        if self._writer is None:
            self._writer = gevent.spawn(self._write)

    def _write(self) -> None:
        scripts = {"set": self._set, "del": self._del, "read": self._read}
        try:
            while self._ops:
                gevent.sleep(0)  # this burst's changes together
                ops, places = self._ops, self._places
                self._ops, self._places = [], []
                done_event = self._writing_done = self._queued_done
                self._queued_done = gevent.event.Event()
                by_client: dict[int, tuple[Any, list[int]]] = {}
                shard_for = getattr(self.broker, "shard_for", None)  # (one Redis: none)
                for n, place in enumerate(places):
                    client = self.broker.client_for(place) if shard_for is None else shard_for(place).client
                    by_client.setdefault(id(client), (client, []))[1].append(n)
                for client, positions in by_client.values():
                    try:
                        pipe = client.pipeline(transaction=False)
                        for n in positions:
                            kind, keys, args, _ = ops[n]
                            scripts[kind](keys=keys, args=args, client=pipe)
                        results = pipe.execute()
                    except Exception as exc:  # a shard away: written again when it is back
                        counters["presence_write_failed"] += len(positions)
                        log.error("presence: %d changes not written to Redis (%s)", len(positions), exc)
                        results = [None] * len(positions)
                    for n, result in zip(positions, results):
                        done = ops[n][3]
                        if done is not None:
                            done(result)
                done_event.set()
        finally:
            self._writer = None
            if self._writing_done is not None:
                self._writing_done.set()  # (killed: nobody waits for good)

    def flush(self, timeout: float = 5.0) -> None:
        """Until every change of ours queued so far is in Redis (and published);
        not until the writer is idle, which a busy process may never be."""
        if gevent.getcurrent() is self._writer:
            return
        if self._ops:
            self._queued_done.wait(timeout)
        elif self._writing_done is not None:
            self._writing_done.wait(timeout)

    # -- loading a channel (interest) --------------------------------------------------
    def _load(self, key: Hashable, chan: _Channel) -> None:
        """Subscribed (confirmed), read the channel's hash, its marker in the stream."""
        topic = self.topic(key)
        if not self.broker.confirm(topic):
            counters["presence_load_failed"] += 1
        with self.presence.lock:
            if self.presence.channels.get(key) is not chan:
                self._loaded(chan)
                return  # left meanwhile
            self._seq += 1
            load = self._loads[self._seq] = _Load(self._seq, key, chan)
        channel, marker = self.broker.wire_publish(
            topic, wire.encode({"op": "mark", "o": self.origin, "n": load.seq}))
        marker = _MARK_ORIGIN + marker[8:]

        def read(result: Any) -> None:
            with self.presence.lock:
                if result is None:  # not read: what the changes told; read again on reconnect
                    self._finish(load, None)
                elif load.marked:  # the marker was dispatched first: apply, then what came after
                    self._finish(load, result)
                else:
                    load.result = result  # applied at the marker
        self._queue("read", [self.hash_key(key)], [channel, marker, self._suffix(key), self._publish], read,
                    self.place(key))

    def _marked(self, seq: int) -> None:
        """Our read's marker, in the stream of changes (under the lock)."""
        load = self._loads.get(seq)
        if load is None:
            return
        if load.result is not None:
            self._finish(load, load.result)
        else:
            load.marked = True
            self._holding[load.chan] = load

    def _finish(self, load: _Load, result: list[Any] | None) -> None:
        self._loads.pop(load.seq, None)
        self._holding.pop(load.chan, None)
        chan, presence = load.chan, self.presence
        if result is not None and presence.channels.get(load.key) is chan:
            self._replace_remote(chan, [f for f in self._found(result) if f[1] != self.origin])
        for event in load.held:
            self._apply(chan, event)
        self._loaded(chan)

    def _replace_remote(self, chan: _Channel, found: list[tuple[str, str, Any, Any]]) -> None:
        """The other processes' entries of ``chan`` are ``found`` (a read):
        the owner's ``remote_del`` for those gone, ``remote_set`` for each."""
        now = {f[0] for f in found}
        for cid in [cid for cid in chan.remote if cid not in now]:
            self.presence.remote_del(chan, cid)
        for cid, origin, identity, meta in found:
            self.presence.remote_set(chan, cid, origin, identity, meta)

    def _loaded(self, chan: _Channel) -> None:
        event = self.loading.pop(chan, None)
        if event is not None:
            self.presence.loaded(chan)
            event.set()

    def wait_loaded(self, only: _Channel | None = None, timeout: float = 5.0) -> None:
        """Until the channels being loaded now are, or ``only`` that one
        (their answers complete); one not loaded within ``timeout`` (its
        marker lost with a connection) is given up: its answers list what
        the changes told."""
        loading = self.loading
        waits = list(loading.items()) if only is None else [(only, loading[only])] if only in loading else []
        for chan, event in waits:
            if not event.wait(timeout):
                counters["presence_load_timeouts"] += 1
                with self.presence.lock:
                    self._abandon(chan)
                    self._loaded(chan)

    def _abandon(self, chan: _Channel) -> None:
        """Forget the reads of ``chan`` under way (under the lock); the changes
        held behind one are applied."""
        for seq, load in list(self._loads.items()):
            if load.chan is chan:
                del self._loads[seq]
                for event in load.held:
                    self._apply(chan, event)
        self._holding.pop(chan, None)

    @staticmethod
    def _found(result: list[bytes]) -> list[Found]:
        found = []
        for i in range(0, len(result), 2):
            value = bytes(result[i + 1])
            identity, meta = wire.decode(value[16:])
            found.append((bytes(result[i]).decode(), value[:16].decode(), identity, meta))
        return found

    # -- receiving ---------------------------------------------------------------------
    def _on_message(self, data: bytes) -> None:
        event = wire.decode(data)
        presence = self.presence
        with presence.lock:
            if event.get("op") == "mark":
                if event.get("o") == self.origin:  # (another process's read: not ours)
                    self._marked(event["n"])
                return
            chan = presence.channels.get(retained.compact_key(wire.json_key(event["c"])))
            if chan is None:
                return  # nobody here (a lingering subscription)
            load = self._holding.get(chan)
            if load is not None:
                load.held.append(event)  # after our read's marker: applied after the read
                return
            self._apply(chan, event)

    def _apply(self, chan: _Channel, event: dict[str, Any]) -> None:
        op = event.get("op")
        if op == "add":
            self.presence.remote_set(chan, str(event["client"]), event["o"], event["identity"], event["meta"])
        elif op == "del":
            self.presence.remote_del(chan, str(event["client"]))

    # -- reading (queries) -------------------------------------------------------------
    def read(self, key: Hashable) -> list[Found] | None:
        """``key``'s live entries, every process's, from Redis (without the
        lock); None when Redis cannot answer."""
        self.flush()
        try:
            result = self._read_now([self.hash_key(key)], ["", "", self._suffix(key), self._publish],
                                    place=self.place(key))
        except BrokerUnavailable:
            counters["presence_read_failed"] += 1
            return None
        return self._found(result)

    # -- broker listener -----------------------------------------------------------------
    def channels_reconnected(self, covers: Callable[[str], bool] | None) -> None:
        gevent.spawn(self._rewrite, covers)

    def _rewrite(self, covers: Callable[[str], bool] | None) -> None:
        """A shard came back: our entries there again, and its channels read again."""
        presence = self.presence
        with presence.lock:
            chans = [(key, chan) for key, chan in presence.channels.items()
                     if covers is None or covers(self.topic(key))]
            for key, chan in chans:
                for entry in chan.local.values():
                    self.write(key, entry.client, entry.identity, entry.meta, chan.value)
        for key, chan in chans:
            with presence.lock:
                if presence.channels.get(key) is not chan:
                    continue
                self._abandon(chan)  # a read under way may have lost its marker with the connection
                self.loading.setdefault(chan, gevent.event.Event())
            self._load(key, chan)

    def peer_gone(self, origin: bytes) -> None:
        o = origin.hex()
        presence = self.presence
        with presence.lock:
            for key, chan in list(presence.channels.items()):
                for cid in [cid for cid, e in chan.remote.items() if e.origin == o]:
                    presence.remote_del(chan, cid)
                    self.erase(key, cid, chan.value, tell=False)


"""The Redis broker: Redis pub/sub carries messages between processes and hosts.

One Redis channel per topic (``snorky:<topic>``).  Each message is this
process's 8-byte origin followed by the data, so a process ignores what it
published itself (it has delivered locally already).  Publishes go through
one connection per process, pipelined per burst, so the others receive them
in publish order.

Routing by interest: the channels of a routed family (PubSub, Chat: see
:meth:`~.base.Broker.route`) each have their own topic
(:func:`~.base.channel_topic`, a hash of the channel), and a process is
subscribed on Redis only to the topics of channels it has local subscribers
for, so a publish reaches only the processes that deliver it.  Interest
changes are coalesced: the listener sends one ``SUBSCRIBE`` (and one
``UNSUBSCRIBE``) for all the changes of a hub tick, and a channel whose last
local subscriber left stays subscribed for ``route_linger`` seconds (at most
``max_lingering`` channels), so a channel joined and left repeatedly costs
one ``SUBSCRIBE`` per linger, not one per join.  :meth:`RedisBroker.confirm`
waits for Redis' confirmation of a subscription.

Reading and dispatching are apart: the listener greenlet reads whatever Redis
sends into a bounded in-process inbox (``inbox_bytes``, ``inbox_messages``)
as soon as it arrives, so Redis' output buffer for this process stays empty
while the process runs; a dispatcher greenlet hands the inbox to the handlers
in slices of ``dispatch_slice`` messages and yields between slices (and lets
the process go idle, so the flusher writes to the sockets, every 20 ms of
dispatching).  When the inbox is full the listener stops reading until the
dispatcher has made room: a process that cannot keep up falls behind in
Redis' buffer (and is cut at ``client-output-buffer-limit pubsub``, then
reconnects), never in memory of its own.

Faults: when Redis is unreachable the listener logs at ERROR, marks the
broker ``disconnected`` (see ``/healthz``), and reconnects with exponential
backoff (0.1 s doubling up to 5 s), re-subscribing every topic (every
channel of current interest included).  Meanwhile
local work goes on; messages published by this process while Redis is down
reach only local clients, and messages other processes publish in that
window are lost to this one (Redis pub/sub keeps nothing): both are counted
(``broker_publish_failed``, ``broker_disconnects``).

Peers: every ``heartbeat_interval`` seconds a connected process publishes a
heartbeat on ``snorky:_peers`` and refreshes its liveness key
``snorky:proc:<origin>`` (expiring after ``peer_expiry``).  A peer whose
heartbeats stop for ``peer_expiry`` seconds is declared gone to the
listeners (services drop its state).  While this process is disconnected
nobody is expired (it cannot tell a dead peer from its own deafness); on
reconnect every known peer gets a fresh ``peer_expiry`` of grace, and the
listeners re-announce their state.

Claims: ``claim(key)`` sets ``snorky:own:<key>`` to this process's token
unless a live process (liveness key present) holds it — one Lua script, so
two processes racing for a key cannot both win.
"""
from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.monkey

from .. import hub
from ..extras import install_command
from ..metrics import counters
from .base import Broker, BrokerUnavailable, Handler
from .history import HistoryStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

__all__ = ["RedisBroker", "redis_client", "import_redis", "REDIS_MISSING"]

log = logging.getLogger("snorky_sync.brokers.redis")

PREFIX = "snorky:"
_PREFIX_LEN = len(PREFIX)
PEERS = "_peers"          # heartbeat topic
PROC = PREFIX + "proc:"   # liveness keys
OWN = PREFIX + "own:"     # claimed keys

# KEYS: claimed key; ARGV: token, origin hex, liveness TTL (ms), my liveness key,
# the liveness keys' suffix (a Redis Cluster node's hash tag: the liveness keys
# are not declared, they need not share the claimed key's slot, only its node)
_CLAIM = """
redis.call('SET', ARGV[4], '1', 'PX', ARGV[3])
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] or string.sub(cur, 1, 16) == ARGV[2]
   or redis.call('EXISTS', '""" + PROC + """' .. string.sub(cur, 1, 16) .. ARGV[5]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# KEYS: claimed key; ARGV: the liveness keys' suffix: the owner's origin if it is alive
_OWNER = """
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('EXISTS', '""" + PROC + """' .. string.sub(cur, 1, 16) .. ARGV[1]) == 1 then
  return string.sub(cur, 1, 16)
end
return false
"""
# KEYS: claimed key; ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


REDIS_MISSING = ('SNORKY_REDIS_URL is set but the redis package is not installed: '
                 + install_command("redis"))


#: a registered Lua script: ``run(keys, args, place=None)`` -> what the script returns
ScriptRunner = Callable[..., Any]


def import_redis() -> ModuleType:
    """redis-py, or an ImportError that says which extra installs it."""
    try:
        import redis
    except ImportError as exc:
        raise ImportError(REDIS_MISSING, name="redis") from exc
    return redis


#: Redis connections a process's client keeps at most (the listener's one
#: included); a call finding none free waits for one up to POOL_TIMEOUT
#: seconds.  redis-py's own pool raises "Too many connections" past its
#: count (100 in redis-py 8): a burst of 200 pages subscribing to history
#: channels at once got ``History unavailable`` for half of them.
POOL_SIZE = 128
POOL_TIMEOUT = 5.0


def redis_client(url: str, **kwargs: Any) -> Redis:
    """A redis-py client for ``url``: ``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``
    (Redis Sentinel: every new connection asks the sentinels for the current
    master of ``service``, so after a failover the reconnects reach the new
    one; ``?sentinel_password=...`` if the sentinels need one).  Its pool
    holds at most :data:`POOL_SIZE` connections; a caller beyond them waits
    for one (at most :data:`POOL_TIMEOUT` s) instead of failing."""
    redis = import_redis()
    if not url.startswith("redis+sentinel://"):
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=POOL_TIMEOUT,
                                                     **kwargs)
        client: Redis = redis.Redis(connection_pool=pool)
        return client
    from urllib.parse import parse_qs, unquote, urlsplit

    from redis.sentinel import Sentinel
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        sentinels.append((host.strip("[]") or "127.0.0.1", int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URL needs the service name: "
                         "redis+sentinel://host:26379,host:26379/mymaster[/db]")
    service = unquote(path[0])
    db = int(path[1]) if len(path) > 1 else 0
    query = parse_qs(parts.query)
    sentinel_kwargs: dict[str, Any] = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout")
                                       if k in kwargs}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"][0]
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    master: Redis = sentinel.master_for(service, connection_pool_class=_blocking_sentinel_pool(),
                                        max_connections=POOL_SIZE, timeout=POOL_TIMEOUT,
                                        db=db, password=password, username=username, **kwargs)
    return master


def _blocking_sentinel_pool() -> type[Any]:
    """redis-py's Sentinel pool that waits for a free connection, as
    BlockingConnectionPool does (redis-py has no such class)."""
    from redis import BlockingConnectionPool
    from redis.sentinel import SentinelConnectionPool

    class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
        pass
    return BlockingSentinelConnectionPool


def _by_slot(names: list[str]) -> list[list[str]]:
    """Shard channels grouped by their Redis Cluster slot (the order kept within each)."""
    from redis.crc import key_slot
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(key_slot(name.encode("utf-8", "surrogatepass")), []).append(name)
    return list(groups.values())


class RedisBroker(Broker):
    """Broker over Redis pub/sub (redis-py with hiredis)."""

    state = "disconnected"
    distributed = True

    #: seconds a channel stays subscribed after its last local subscriber left
    #: (default: ``peer_expiry``, i.e. ``SNORKY_CLUSTER_EXPIRY``)
    route_linger = 5.0
    #: channels lingering at most (beyond it the oldest is unsubscribed at once)
    max_lingering = 10000
    #: bytes / messages read off Redis and not yet dispatched, at most
    inbox_bytes = 32 * 1024 * 1024
    inbox_messages = 50000
    #: seconds :meth:`confirm` waits for a lost connection to come back
    #: (the first connection of a starting worker is waited for in full)
    RECONNECT_WAIT = 1.0
    #: messages dispatched between two yields of the dispatcher
    dispatch_slice = 256
    _read_batch = 1024        # messages read per wake-up before other greenlets get a turn
    _subscribe_chunk = 1000   # channels per SUBSCRIBE / UNSUBSCRIBE command
    _idle_every = 0.02        # seconds of dispatching after which the process is let go idle

    #: set by a :class:`~.sharded.ShardedBroker` for its shards: whether this
    #: connection carries the process-wide topics (shard 0), and which channel
    #: topics it carries (None: all of them)
    carries_process_topics = True
    covers: Callable[[str], bool] | None = None
    #: set by a :class:`~.cluster.ClusterBroker` for its shards (one per
    #: master): pub/sub is sharded (SSUBSCRIBE / SPUBLISH), every channel
    #: name carries a hash tag (:meth:`channel_name`), the liveness key this
    #: suffix (the node's tag, so the claim scripts find it on the node)
    sharded_pubsub = False
    node_tag = ""
    liveness_suffix = ""
    #: the channel topic -> its hash tag (a ClusterBroker's: by the topic's placement)
    tag_of: Callable[[str], str] | None = None
    #: the command by which :meth:`publish` (and a script: :meth:`wire_publish`) publishes
    publish_command = "PUBLISH"

    def __init__(self, url: str, max_backoff: float = 5.0, heartbeat_interval: float = 1.0,
                 peer_expiry: float = 5.0, route_linger: float | None = None,
                 origin: bytes | None = None, client: Redis | None = None) -> None:
        super().__init__()
        if origin is not None:  # a shard of a ShardedBroker: one process, one origin
            self.origin = origin
        self.route_linger = peer_expiry if route_linger is None else route_linger
        redis = import_redis()
        if not gevent.monkey.is_module_patched("socket"):
            raise RuntimeError(
                "RedisBroker needs gevent.monkey.patch_all() at program start "
                "(gunicorn's gevent workers and `python -m snorky_sync serve` do it)")
        self._redis_mod = redis
        self.url = url
        self.max_backoff = max_backoff
        self.client = client if client is not None else redis_client(
            url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10)
        self._listener: gevent.Greenlet | None = None
        self._sender: gevent.Greenlet | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._queued = 0  # publishes queued so far
        self._sent = 0    # of them, handed to Redis (or failed)
        self._batch_done = gevent.event.Event()  # set (and replaced) after each batch
        self._pubsub: PubSub | None = None
        self.connected_event = gevent.event.Event()
        self._ever_connected = False  # barrier() waits for the first connection only
        self.heartbeat_interval = heartbeat_interval
        self.peer_expiry = peer_expiry
        self._ttl_ms = max(1, int(peer_expiry * 1000))  # of the liveness key
        self.origin_hex = self.origin.hex()
        self.peers: dict[bytes, float] = {}  # origin -> last heartbeat (monotonic)
        self.handlers[PEERS] = self._on_heartbeat
        # barrier markers: on our own topic, echoed back in Redis' single order
        self._barrier_topic = "_barrier:" + self.origin_hex
        self.handlers[self._barrier_topic] = self._on_barrier
        self.echo.add(self._barrier_topic)
        self._barriers: dict[int, gevent.event.Event] = {}
        self._barrier_seq = 0
        self._heart: gevent.Greenlet | None = None
        self._claim = self.client.register_script(_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self._owner = self.script(_OWNER)
        # subscriptions: only the listener greenlet talks to the pubsub connection
        self._wake = gevent.event.Event()            # the listener: interest changed, or inbox room
        self._dirty: set[str] = set()                # topics whose subscription may have to change
        self._lingering: dict[str, float] = {}       # topic -> when to unsubscribe (in that order)
        self._on: set[str] = set()                   # subscribed on the current connection
        self._confirmed: set[str] = set()            # ... and confirmed by Redis
        self._confirming: dict[str, gevent.event.Event] = {}
        self._unsubscribing: dict[str, int] = {}     # SUNSUBSCRIBEs sent, not confirmed yet
        # what was read off Redis, waiting for the dispatcher
        self._inbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._inbox_size = 0
        self._mail = gevent.event.Event()            # the dispatcher: the inbox is not empty
        self._dispatcher: gevent.Greenlet | None = None

    def subscribe(self, topic: str, handler: Handler, echo: bool = False) -> None:
        super().subscribe(topic, handler, echo)
        self._dirty.add(topic)
        self._wake.set()

    # -- routing by interest ---------------------------------------------------------
    def want(self, topic: str) -> None:
        self._lingering.pop(topic, None)
        super().want(topic)
        if topic not in self._on:
            self._dirty.add(topic)
            self._wake.set()

    def _forget(self, topic: str) -> None:
        # the last local subscriber left: stay subscribed for route_linger
        # seconds, so joining and leaving a channel over and over costs no churn
        lingering = self._lingering
        lingering[topic] = time.monotonic() + self.route_linger
        if len(lingering) > self.max_lingering:
            self._unsubscribe_later(next(iter(lingering)))

    def _unsubscribe_later(self, topic: str) -> None:
        del self._lingering[topic]
        super()._forget(topic)
        self._dirty.add(topic)
        self._wake.set()

    def _sweep_lingering(self, now: float) -> None:
        lingering = self._lingering
        while lingering:
            topic = next(iter(lingering))
            if lingering[topic] > now:
                return  # deadlines are in insertion order (one linger for all)
            self._unsubscribe_later(topic)

    # -- for stores in Redis (redis_history) --------------------------------------------
    def wire_publish(self, topic: str, data: bytes) -> tuple[str, bytes]:
        """The Redis channel and message by which :meth:`publish` sends
        ``data`` on ``topic`` (for a script that publishes as the broker would)."""
        return self.channel_name(topic), self.origin + data

    def channel_name(self, topic: str) -> str:
        """The Redis channel of ``topic``: ``snorky:<topic>``; a shard of a
        Redis Cluster puts a hash tag first, ``snorky:{<tag>}<topic>`` (a
        channel topic: its placement's tag, which its keys carry too, so a
        script publishes on the node holding them; any other topic: the
        node's own tag, so it is published and heard on this shard's node)."""
        if not self.sharded_pubsub:
            return PREFIX + topic
        if self.tag_of is not None and topic.rpartition(":")[0] in self.families:
            return f"{PREFIX}{{{self.tag_of(topic)}}}{topic}"
        return f"{PREFIX}{{{self.node_tag}}}{topic}"

    def _topic_of(self, channel: bytes) -> str:
        name = channel[_PREFIX_LEN:].decode()
        if self.sharded_pubsub and name.startswith("{"):
            return name[name.index("}") + 1:]
        return name

    def tagged_key(self, key: str, place: str) -> str:
        """The name of Redis key ``key`` placed with ``place`` (a channel's
        topic): one Redis holds everything, the name as it is (a
        :class:`~.cluster.ClusterBroker` gives it the place's hash tag)."""
        return key

    def liveness_suffix_for(self, key: str) -> str:
        """What follows ``PROC + origin`` in the liveness keys on the Redis
        holding ``key`` (for a script that checks whether a process is alive)."""
        return self.liveness_suffix

    def liveness_key(self, origin_hex: str) -> str:
        """A process's liveness key on this Redis (see :data:`PROC`)."""
        return PROC + origin_hex + self.liveness_suffix

    def client_for(self, key: str) -> Redis:
        """The Redis client holding ``key`` (one Redis: always :attr:`client`)."""
        return self.client

    def script(self, source: str) -> ScriptRunner:
        """Register the Lua script ``source``: a function ``run(keys, args,
        place=None)`` that runs it and raises :class:`BrokerUnavailable` when
        Redis cannot be reached.  ``place`` matters with several shards
        (:class:`~.sharded.ShardedBroker`): the name the keys are placed by
        (a channel's topic), else ``keys[0]``."""
        registered = self.client.register_script(source)
        redis_error = self._redis_mod.RedisError

        def run(keys: list[str], args: list[Any], place: str | None = None) -> Any:
            try:
                return registered(keys=keys, args=args)
            except redis_error as exc:
                raise BrokerUnavailable(str(exc)) from exc
        return run

    def history_store(self, namespace: str, family: str, size: int, ttl: float) -> HistoryStore:
        """Channel histories in Redis (:class:`~.redis_history.RedisHistory`),
        shared by every process; ``append`` publishes on ``family``'s channel topics."""
        from .redis_history import RedisHistory
        return RedisHistory(self, namespace, family, size, ttl)

    def confirm(self, topic: str, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` s) until Redis confirmed our subscription
        to ``topic``.  While the listener is connecting (a worker's first
        moments, a reconnect) it waits for the connection too: the listener
        subscribes to every wanted topic as it connects.  A worker that clients
        reach as it starts (a restart, every page reconnecting at once)
        answered them ``History unavailable`` at once instead.  A connection
        lost later waits at most :attr:`RECONNECT_WAIT` (a blip, a failover
        under way): during an outage every call answers soon, and one that
        confirms several topics (a Chat join) does not add up its waits."""
        if topic in self._confirmed:
            return True
        if topic not in self.handlers:
            return False
        deadline = time.monotonic() + timeout
        if self.state != "connected":
            wait = min(timeout, self.RECONNECT_WAIT) if self._ever_connected else timeout
            if not self.connected_event.wait(wait):
                return False
        while topic not in self._confirmed:
            left = deadline - time.monotonic()
            if left <= 0 or self.state != "connected" or topic not in self.handlers:
                return False
            event = self._confirming.get(topic)
            if event is None:
                event = self._confirming[topic] = gevent.event.Event()
            event.wait(left)  # set by the confirmation, or by a lost connection
        return True

    def _apply_interest(self, ps: PubSub) -> None:
        """Send the subscription changes gathered since the last call (listener only)."""
        dirty, self._dirty = self._dirty, set()
        handlers, on = self.handlers, self._on
        adds = [t for t in dirty if t in handlers and t not in on]
        drops = [t for t in dirty if t not in handlers and t in on]
        step = self._subscribe_chunk
        for i in range(0, len(drops), step):
            chunk = drops[i:i + step]
            self._unsub(ps, chunk)
            on.difference_update(chunk)
            self._confirmed.difference_update(chunk)
        for i in range(0, len(adds), step):
            chunk = adds[i:i + step]
            self._sub(ps, chunk)
            on.update(chunk)
        counters["broker_channels_subscribed"] += len(adds)
        counters["broker_channels_unsubscribed"] += len(drops)

    def _sub(self, ps: PubSub, topics: list[str]) -> None:
        names = [self.channel_name(t) for t in topics]
        if self.sharded_pubsub:
            for group in _by_slot(names):  # one SSUBSCRIBE names channels of one slot
                ps.ssubscribe(*group)
        else:
            ps.subscribe(*names)

    def _unsub(self, ps: PubSub, topics: list[str]) -> None:
        names = [self.channel_name(t) for t in topics]
        if self.sharded_pubsub:
            for topic in topics:
                self._unsubscribing[topic] = self._unsubscribing.get(topic, 0) + 1
            for group in _by_slot(names):
                ps.sunsubscribe(*group)  # type: ignore[no-untyped-call]  # unannotated in redis-py
        else:
            ps.unsubscribe(*names)  # type: ignore[no-untyped-call]  # unannotated in redis-py

    def publish(self, topic: str, data: bytes) -> None:
        """Queue a publish; a sender greenlet pipelines everything queued in
        one burst to Redis, in order (one round trip instead of one each)."""
        self._outbox.append(self.wire_publish(topic, data))
        self._queued += 1
        if self._sender is None:
            self._sender = gevent.spawn(self._send_outbox)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the publishes queued before this call were sent (not
        for the sender to go idle: under a steady stream of publishes from
        other greenlets it never does); False after ``timeout``."""
        if self._sender is None and self._outbox:
            self._sender = gevent.spawn(self._send_outbox)
        if self._sender is gevent.getcurrent():
            return False
        target = self._queued
        deadline = time.monotonic() + timeout
        while self._sent < target:
            if self._sender is None:  # it stopped short (killed): what is left waits for the next publish
                return False
            left = deadline - time.monotonic()
            if left <= 0 or not self._batch_done.wait(left):
                return False
        return True

    def _send_outbox(self) -> None:
        try:
            while self._outbox:
                hub.idle(0.005)  # publishes of this burst together; bounded on a busy hub
                batch, self._outbox = self._outbox, []
                upto = self._queued
                try:
                    pipe = self.client.pipeline(transaction=False)
                    command = self.publish_command
                    for channel, payload in batch:
                        pipe.execute_command(command, channel, payload)  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    pipe.execute()
                except self._redis_mod.RedisError as exc:
                    counters["broker_publish_failed"] += len(batch)
                    log.error("Redis publish of %d messages failed (%s): delivered to this "
                              "process only", len(batch), exc)
                self._sent = upto
                done, self._batch_done = self._batch_done, gevent.event.Event()
                done.set()
        finally:
            self._sender = None
            done, self._batch_done = self._batch_done, gevent.event.Event()
            done.set()

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = gevent.spawn(self._deliver)
        if self._listener is None:
            self._listener = gevent.spawn(self._listen)
        if self._heart is None:
            self._heart = gevent.spawn(self._heartbeat)

    @property
    def started(self) -> bool:
        return self._listener is not None

    def stop(self) -> None:
        for g in (self._listener, self._heart, self._dispatcher):
            if g is not None:
                g.kill(block=False)
        self._listener = self._heart = self._dispatcher = None

    # -- peers -------------------------------------------------------------------
    def _notify(self, method: str, *args: Any) -> None:
        for listener in list(self.listeners):
            try:
                getattr(listener, method)(*args)
            except Exception:
                log.exception("broker listener %r.%s failed", listener, method)

    def _heartbeat(self) -> None:
        while True:
            if self.state == "connected":
                try:
                    self.client.set(self.liveness_key(self.origin_hex), b"1", px=self._ttl_ms)
                except self._redis_mod.RedisError as exc:
                    log.error("Redis heartbeat failed (%s)", exc)
                self.publish(PEERS, self.origin)
                self._expire_peers()
            gevent.sleep(self.heartbeat_interval)

    def _expire_peers(self) -> None:
        limit = time.monotonic() - self.peer_expiry
        for origin, seen in list(self.peers.items()):
            # (the dict may be shared by the shards of a ShardedBroker: another
            # shard's heartbeat greenlet may have refreshed or dropped it meanwhile)
            if seen < limit and self.peers.get(origin) == seen:
                del self.peers[origin]
                counters["broker_peers_expired"] += 1
                log.warning("peer process %s sent no heartbeat for %.1fs: dropping its state",
                            origin.hex(), self.peer_expiry)
                self._notify("peer_gone", origin)

    def heard_from(self, origin: bytes) -> None:
        if origin not in self.peers and origin != self.origin:
            self.peers[origin] = time.monotonic()

    def _on_heartbeat(self, data: bytes) -> None:
        origin = bytes(data[:8])
        new = origin not in self.peers
        self.peers[origin] = time.monotonic()
        if new:
            self._notify("peer_seen", origin)

    # -- claims --------------------------------------------------------------------
    def _check_connected(self) -> None:
        if self.state != "connected":
            raise BrokerUnavailable("Redis is not connected")

    def claim(self, key: str) -> str | None:
        token = self.new_claim_token()
        return token if self.claim_many([(key, token)])[0] else None

    def claim_many(self, pairs: Iterable[tuple[str, str]]) -> list[bool]:
        self._check_connected()
        claims = list(pairs)
        if not claims:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, token in claims:
                self._claim(keys=[OWN + key], client=pipe,
                            args=[token, self.origin_hex, self._ttl_ms,
                                  self.liveness_key(self.origin_hex), self.liveness_suffix])
            return [bool(r) for r in pipe.execute()]
        except self._redis_mod.RedisError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def owner(self, key: str) -> str | None:
        self._check_connected()
        found = self._owner([OWN + key], [self.liveness_suffix])
        return found.decode() if found else None

    def release(self, pairs: Iterable[tuple[str, str]], wait: bool = False) -> None:
        claims = list(pairs)
        if not claims or self.state != "connected":
            return  # a lost release only leaves a key the next claim may take over
        if wait:
            self._release_now(claims)
        else:
            gevent.spawn(self._release_now, claims)

    def _release_now(self, pairs: list[tuple[str, str]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, token in pairs:
                self._release(keys=[OWN + key], args=[token], client=pipe)
            pipe.execute()
        except self._redis_mod.RedisError as exc:
            log.warning("Redis release of %d keys failed (%s)", len(pairs), exc)

    def barrier(self, timeout: float = 2.0) -> bool:
        if self.state != "connected":
            # a worker's first moments: what was published before this call
            # reaches it once it is connected (it subscribes to everything then);
            # later, a lost connection answers at once (every caller would wait)
            if self._ever_connected or not self.connected_event.wait(timeout):
                return False
        self._barrier_seq += 1
        seq = self._barrier_seq
        done = self._barriers[seq] = gevent.event.Event()
        try:
            self.publish(self._barrier_topic, seq.to_bytes(8, "big"))
            ok = bool(done.wait(timeout))
        finally:
            self._barriers.pop(seq, None)
        if not ok:
            counters["broker_barrier_timeouts"] += 1
        return ok

    def _on_barrier(self, data: bytes) -> None:
        done = self._barriers.get(int.from_bytes(data, "big"))
        if done is not None:
            done.set()

    def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                ps = self.client.pubsub()  # subscribe confirmations included: see _take
                for topic in list(self._lingering):  # a new connection: only what is wanted now
                    del self._lingering[topic]
                    Broker._forget(self, topic)
                self._dirty.clear()
                topics = list(self.handlers)
                step = self._subscribe_chunk
                for i in range(0, len(topics), step):
                    self._sub(ps, topics[i:i + step])
                self._on.update(topics)
                self._pubsub = ps
                if self.state != "connected":
                    log.info("Redis broker connected to %s (%d topics)", self._safe_url(), len(topics))
                self.state = "connected"
                self._ever_connected = True
                self.connected_event.set()
                backoff = 0.1
                now = time.monotonic()  # grace: peers get a full expiry to be heard again
                for origin in self.peers:
                    self.peers[origin] = now
                # a heartbeat first: whoever hears our state below knows us as a peer
                self.publish(PEERS, self.origin)
                if self.carries_process_topics:
                    self._notify("broker_connected")
                self._notify("channels_reconnected", self.covers)
                self._read(ps)
            except gevent.GreenletExit:
                raise
            except Exception as exc:
                stale = self._pubsub
                if stale is not None:
                    try:
                        stale.close()  # never read from a dead connection again
                    except Exception:
                        pass
                if self.state == "connected":
                    counters["broker_disconnects"] += 1
                    log.error("Redis broker lost its connection (%s): messages from other "
                              "processes are not received until it is back; retrying", exc)
                else:
                    log.error("Redis broker cannot reach %s (%s); retrying in %.1fs",
                              self._safe_url(), exc, backoff)
                self.state = "disconnected"
                self.connected_event.clear()
                self._pubsub = None
                self._on.clear()
                self._confirmed.clear()
                self._unsubscribing.clear()
                for event in self._confirming.values():
                    event.set()  # confirm() answers False
                self._confirming.clear()
                gevent.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    def _read(self, ps: PubSub) -> None:
        """Read what Redis sends into the inbox as soon as it arrives, and send
        the subscription changes; returns only by raising (connection lost)."""
        # This process hears its own heartbeat (every heartbeat_interval) on
        # the peers topic.  Not hearing it for deaf_after seconds means the
        # subscription connection is dead without the socket knowing (a
        # half-open connection, a frozen NAT entry, a failover that left it
        # attached to nothing): reconnect instead of staying deaf.
        deaf_after = max(self.peer_expiry, 3 * self.heartbeat_interval)
        heard = time.monotonic()
        wake = self._wake
        get_message = ps.get_message
        take = self._take
        batch = self._read_batch
        while True:
            wake.clear()
            now = time.monotonic()
            if self._lingering:
                self._sweep_lingering(now)
            if self._dirty:
                self._apply_interest(ps)
            n = 0
            while n < batch and not self._inbox_full():
                msg = get_message(timeout=0.0)
                if msg is None:
                    # nothing parsed (or a health-check reply): is anything left?
                    conn = ps.connection
                    if conn is None:  # closed under us: reconnect (as the AttributeError did)
                        raise ConnectionError("the subscription connection is gone")
                    if not conn.can_read(timeout=0):
                        break
                    continue
                n += 1
                take(msg)
            now = time.monotonic()
            if n:
                heard = now
            if self._inbox_full():
                heard = now  # busy, not deaf: wait for the dispatcher to make room
                wake.wait(1.0)
                continue
            if not n and now - heard > deaf_after:
                counters["broker_deaf_reconnects"] += 1
                raise ConnectionError(f"heard nothing from Redis for {now - heard:.1f}s, "
                                      "not even this process's own heartbeat")
            self._wait_readable(ps, 1.0)

    def _wait_readable(self, ps: PubSub, timeout: float) -> None:
        """Until the connection has data, the interest changed, or ``timeout``."""
        sock = getattr(ps.connection, "_sock", None)
        if sock is None:
            return  # the next read reconnects (or raises)
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        watcher.start(self._wake.set)
        try:
            self._wake.wait(timeout)
        finally:
            watcher.stop()
            watcher.close()

    def _inbox_full(self) -> bool:
        return self._inbox_size >= self.inbox_bytes or len(self._inbox) >= self.inbox_messages

    def _take(self, msg: dict[str, Any]) -> None:
        """One message off the connection (listener): counted (heartbeats
        aside) and put in the inbox, unless it is this process's own
        (delivered locally already) or a known peer's heartbeat (taken here)."""
        kind = msg["type"]
        if kind == "message" or kind == "smessage":
            data = msg["data"]
            topic = self._topic_of(msg["channel"])
            if topic == PEERS:
                peer = bytes(data[8:16])
                if peer == self.origin:
                    return
                if peer in self.peers:  # refreshed here, not behind a backlog
                    self.peers[peer] = time.monotonic()
                    return
            else:
                counters["broker_messages_in"] += 1
                counters["broker_bytes_in"] += len(data)
                if data[:8] == self.origin and topic not in self.echo:
                    return  # ours: delivered locally already
            self._inbox.append((topic, data))
            self._inbox_size += len(data)
            self._mail.set()
        elif kind == "subscribe" or kind == "ssubscribe":
            topic = self._topic_of(msg["channel"])
            if topic in self._on:
                self._confirmed.add(topic)
                event = self._confirming.pop(topic, None)
                if event is not None:
                    event.set()
        elif kind == "sunsubscribe":
            topic = self._topic_of(msg["channel"])
            asked = self._unsubscribing.get(topic, 0)
            if asked > 1:
                self._unsubscribing[topic] = asked - 1
            elif asked == 1:
                del self._unsubscribing[topic]
            elif topic in self._on:
                # not asked for: the node no longer serves the channel's slot
                # (a failover made it a replica, the slot migrated): subscribe
                # again where the slot is now, as after a lost connection
                raise ConnectionError(f"Redis Cluster dropped the subscription to {topic} "
                                      "(its slot moved)")

    def _deliver(self) -> None:
        """The dispatcher: the inbox to the handlers, in order, in slices."""
        inbox = self._inbox
        handlers = self.handlers
        idled = time.monotonic()
        while True:
            if not inbox:
                self._mail.clear()
                self._mail.wait()
                idled = time.monotonic()
                continue
            was_full = self._inbox_full()
            for _ in range(min(len(inbox), self.dispatch_slice)):
                topic, data = inbox.popleft()
                self._inbox_size -= len(data)
                handler = handlers.get(topic)
                if handler is None:
                    continue  # a channel given up since (nobody here wants it)
                try:
                    handler(data[8:])
                except Exception:
                    log.exception("broker handler for %s failed", topic)
            if was_full and not self._inbox_full():
                self._wake.set()  # the listener reads again
            if inbox:
                now = time.monotonic()
                if now - idled > self._idle_every:
                    hub.idle(0.01)  # the flusher writes what the slices queued
                    idled = time.monotonic()
                else:
                    gevent.sleep(0)

    def _safe_url(self) -> str:
        u = self.url
        if "@" in u:
            scheme, rest = u.split("://", 1)
            return scheme + "://***@" + rest.split("@", 1)[1]
        return u

    def health(self) -> dict[str, Any]:
        return {"broker": "redis", "state": self.state, "peers": len(self.peers),
                "channels": len(self.wanted)}

    def shard_health(self) -> dict[str, Any]:
        """This connection's part of a :class:`~.sharded.ShardedBroker`'s health."""
        return {"url": self._safe_url(), "state": self.state, "channels": len(self.wanted)}

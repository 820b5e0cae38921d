"""Redis Cluster: ``SNORKY_REDIS_URL=redis+cluster://host:port[,host:port...]``.

Any node of the cluster is a seed: the broker asks it for the slots
(``CLUSTER SLOTS``) and holds one :class:`~.redis.RedisBroker` per master
(a *shard*, as in :class:`~.sharded.ShardedBroker`: its connections,
listener, dispatcher, reconnects), with sharded pub/sub (Redis 7:
``SSUBSCRIBE`` / ``SPUBLISH``, a message goes to the subscribers of the
node holding its channel's slot, not over the whole cluster bus).

Placement is the cluster's own: the key slot (CRC16 of the name's hash tag).

* a channel of a routed family (PubSub, Chat, a channel's presence): its
  Redis channel ``snorky:{<tag>}<topic>`` and its keys (history, the
  idempotency claims its appends record) carry one hash tag, a digest of the
  topic's placement (:func:`tag_of`), so they are in one slot:
  the history script numbers, stores and ``SPUBLISH``-es on one node;
* a key that belongs to no channel (shared tables, claims, DataSync resume
  states, idempotency claims of a channel without history): by its own name
  (a resume state's two keys share a tag);
* process-wide topics (the services' replicas, control, DataSync's topic,
  the SockJS relay, barriers): on the master of the slot of the fixed tag
  ``{snorky}`` (the *process shard*, listed first);
* heartbeats and liveness keys on every master, under a tag of a slot of
  that master (``snorky:{n<k>}_peers``, ``snorky:proc:<origin>{n<k>}``):
  the claim scripts run on the claimed key's node and find there the
  liveness keys they read.

Failover: a shard is a set of slot ranges, not an address.  Each of its
connections, when it (re)connects, asks the cluster which node is now the
master of its slots (any node that answers: the seeds and every node seen);
a reply ``MOVED`` (the node is no longer the master: a failover demoted it)
and a ``sunsubscribe`` the node sends by itself (the slot left it) make the
connection reconnect there.  So when a master dies, its shard is
disconnected (``degraded`` in ``/healthz``; its channels and keys answer as
with one Redis down) until a replica is promoted, then reconnects to it,
re-subscribes, and tells the services (``channels_reconnected``): history
channels re-read and recover, or signal their gap, exactly as after a
single Redis reconnect.

Limits: the slots must stay where they were at start: adding or removing
masters, or moving slots (``redis-cli --cluster reshard``/``rebalance``),
needs the processes restarted (until then the log says so, and the moved
slots' channels and keys answer as unreachable).  With ``cluster-require-full-coverage yes``
(Redis' default) the whole cluster refuses commands while a failed master is
not yet replaced: every shard may flap for that time (``cluster-node-timeout``
plus the election).  No TLS (``rediss``) yet: a URL with options is refused.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .base import Broker
from .redis import OWN, POOL_SIZE, POOL_TIMEOUT, PREFIX, RedisBroker, ScriptRunner, import_redis
from .sharded import ShardedBroker

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ClusterBroker", "key_slot", "parse_cluster_url", "SLOTS", "PROCESS_TAG"]

log = logging.getLogger("snorky_sync.brokers.cluster")

SLOTS = 16384
#: the hash tag of the process-wide topics: they are on the master of its slot
PROCESS_TAG = "snorky"
SCHEME = "redis+cluster://"


def key_slot(name: str | bytes) -> int:
    """The cluster slot of a key or a shard channel (CRC16 of its hash tag, as Redis)."""
    from redis.crc import key_slot as crc_slot
    return int(crc_slot(name.encode("utf-8", "surrogatepass") if isinstance(name, str) else name))


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[user:password@]host:port[,host:port...][?...]`` ->
    (the seed nodes, connection arguments).  ValueError when it lists none."""
    if not url.startswith(SCHEME):
        raise ValueError(f"not a {SCHEME} URL: {url!r}")
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    seeds = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host:
            host, port = item, ""
        seeds.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
    if not seeds:
        raise ValueError(f"{SCHEME} URL names no node: {SCHEME}host:port[,host:port...]")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{SCHEME} URL: a Redis Cluster has only database 0 (got {parts.path!r})")
    kwargs: dict[str, Any] = {}
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    query = parse_qs(parts.query)
    if query:
        raise ValueError(f"{SCHEME} URL: unknown options {sorted(query)}")
    return seeds, kwargs


def tag_of(place: str) -> str:
    """The hash tag of everything placed by ``place`` (a channel topic or a
    key): 16 hex digits (no brace of a service name can break it)."""
    return hashlib.blake2b(place.encode("utf-8", "surrogatepass"), digest_size=8,
                           person=b"snorky-slot").hexdigest()


class Topology:
    """Which node is the master of which slots, asked of any node that answers."""

    def __init__(self, seeds: list[tuple[str, int]], conn_kwargs: dict[str, Any]) -> None:
        self.nodes: list[tuple[str, int]] = list(seeds)  # the last that answered first
        self.conn_kwargs = conn_kwargs
        # [(first slot, last slot, master address)], from the last answer
        self.ranges: list[tuple[int, int, tuple[str, int]]] = []
        self.fresh_until = 0.0
        self._lock = threading.Lock()  # gevent-patched: one greenlet asks at a time
        self.shape: list[tuple[tuple[int, int], ...]] | None = None  # the masters' slots at start
        self._reported: list[tuple[tuple[int, int], ...]] | None = None

    def invalidate(self) -> None:
        self.fresh_until = 0.0

    def refresh(self) -> list[tuple[int, int, tuple[str, int]]]:
        """Ask the nodes in turn (CLUSTER SLOTS); the ranges.  ConnectionError
        when none answers; ValueError when one answers that it is no cluster."""
        redis = import_redis()
        errors = []
        for host, port in list(self.nodes):
            client = redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=1,
                                 **self.conn_kwargs)
            try:
                reply = client.execute_command("CLUSTER", "SLOTS")
            except redis.ResponseError as exc:
                if "cluster support disabled" in str(exc):
                    raise ValueError(f"SNORKY_REDIS_URL is a {SCHEME} URL but {host}:{port} is not "
                                     "a Redis Cluster node (cluster support disabled): use redis:// "
                                     "for one Redis") from exc
                errors.append(f"{host}:{port}: {exc}")
                continue
            except redis.RedisError as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            finally:
                client.close()
            ranges = []
            for entry in reply:
                first, last, master = int(entry[0]), int(entry[1]), entry[2]
                addr = (_text(master[0]) or host, int(master[1]))
                ranges.append((first, last, addr))
                for node in entry[2:]:
                    seen = (_text(node[0]) or host, int(node[1]))
                    if seen not in self.nodes:
                        self.nodes.append(seen)
            if not ranges:
                errors.append(f"{host}:{port}: no slot is assigned (cluster not created yet?)")
                continue
            self.nodes.remove((host, port))
            self.nodes.insert(0, (host, port))
            self.ranges = sorted(ranges)
            self.fresh_until = time.monotonic() + 1.0
            self._check_shape()
            return self.ranges
        raise ConnectionError("no node of the Redis Cluster answered: " + "; ".join(errors))

    def _check_shape(self) -> None:
        """The masters' slot sets as at start (a failover keeps them), or an
        error in the log: slots moved (resharding, masters added or
        removed) are not followed, the processes must restart."""
        by_master: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for first, last, addr in self.ranges:
            by_master.setdefault(addr, []).append((first, last))
        shape = sorted(tuple(sorted(group)) for group in by_master.values())
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape and shape != self._reported:
            self._reported = shape
            log.error("Redis Cluster: slots moved between masters since this process started (%d masters "
                      "then, %d now): the channels and keys of the moved slots are unreachable and their "
                      "shard keeps reconnecting; restart every process (see docs/scaling.md, Redis Cluster)",
                      len(self.shape), len(shape))

    def master_of(self, slot: int) -> tuple[str, int]:
        """The address of the master serving ``slot`` now (asked again when
        the last answer is over a second old or was found wrong)."""
        with self._lock:
            if time.monotonic() > self.fresh_until:
                self.refresh()
            for first, last, addr in self.ranges:
                if first <= slot <= last:
                    return addr
        raise ConnectionError(f"no master serves slot {slot} of the Redis Cluster")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _slot_connection_class() -> type[Any]:
    """A redis-py Connection that connects to whichever node is the master
    of its shard's slot (as redis-py's Sentinel connections ask the sentinels)."""
    from redis import Connection, ResponseError

    class SlotConnection(Connection):
        def __init__(self, *, topology: Topology, slot: int, **kwargs: Any) -> None:
            self.topology = topology
            self.slot = slot
            super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # unannotated in redis-py

        def connect_check_health(self, check_health: bool = True,
                                 retry_socket_connect: bool = True) -> None:
            if self._sock:
                return
            self.host, self.port = self.topology.master_of(self.slot)
            try:
                super().connect_check_health(check_health, retry_socket_connect)
            except Exception:
                self.topology.invalidate()  # a dead master: ask again next time
                raise

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().read_response(*args, **kwargs)
            except ResponseError as exc:
                if str(exc).startswith("MOVED"):
                    # this node no longer serves the slot (a failover demoted it)
                    self.topology.invalidate()
                    self.disconnect()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    raise ConnectionError(f"Redis Cluster: {exc}") from exc
                raise
    return SlotConnection


class ClusterBroker(ShardedBroker):
    """One :class:`~.redis.RedisBroker` per master of a Redis Cluster (see the module)."""

    publish_command = "SPUBLISH"

    def __init__(self, url: str, heartbeat_interval: float = 1.0, peer_expiry: float = 5.0,
                 **kwargs: Any) -> None:
        Broker.__init__(self)
        import_redis()
        self.url = url
        self.urls = [url]
        self.heartbeat_interval = heartbeat_interval
        self.peer_expiry = peer_expiry
        self.peers: dict[bytes, float] = {}
        seeds, conn_kwargs = parse_cluster_url(url)
        self.topology = Topology(seeds, conn_kwargs)
        ranges = self.topology.refresh()  # raises: nothing would work without the slots
        by_master: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for first, last, addr in ranges:
            by_master.setdefault(addr, []).append((first, last))
        covered = sum(last - first + 1 for first, last, _ in ranges)
        if covered != SLOTS:
            raise ValueError(f"Redis Cluster at {self._safe_url()}: {SLOTS - covered} slots have no master")
        process_slot = key_slot(PROCESS_TAG)
        groups = sorted(by_master.values(),
                        key=lambda rs: (not any(f <= process_slot <= last for f, last in rs), rs))
        if len(groups) > 255:
            raise ValueError("Redis Cluster: more than 255 masters")
        self._slot_shard = bytearray(SLOTS)  # slot -> shard number
        self.shards = []
        for i, group in enumerate(groups):
            for first, last in group:
                self._slot_shard[first:last + 1] = bytes([i]) * (last - first + 1)
            tag = PROCESS_TAG if i == 0 else self._node_tag(i)
            shard = RedisBroker(f"redis://cluster-shard-{i}", heartbeat_interval=heartbeat_interval,
                                peer_expiry=peer_expiry, origin=self.origin,
                                client=self._client(key_slot(tag), conn_kwargs), **kwargs)
            shard.url = self._shard_url(group)
            shard.sharded_pubsub = True
            shard.publish_command = "SPUBLISH"
            shard.node_tag = tag
            shard.liveness_suffix = "{" + tag + "}"
            shard.tag_of = self.topic_tag
            shard.peers = self.peers
            shard.listeners = self.listeners
            shard.carries_process_topics = i == 0
            shard.covers = functools.partial(self._covers, i)
            self.shards.append(shard)
        self.origin_hex = self.origin.hex()
        log.info("Redis Cluster: %d masters (%s)", len(self.shards),
                 ", ".join(f"{a[0]}:{a[1]}" for a in by_master))

    def _node_tag(self, index: int) -> str:
        """The first tag ``n<k>`` whose slot shard ``index`` holds (the same in every process)."""
        k = 0
        while self._slot_shard[key_slot(f"n{k}")] != index:
            k += 1
        return f"n{k}"

    def _client(self, slot: int, conn_kwargs: dict[str, Any]) -> Redis:
        redis = import_redis()
        pool = redis.BlockingConnectionPool(
            connection_class=_slot_connection_class(), topology=self.topology, slot=slot,
            max_connections=POOL_SIZE, timeout=POOL_TIMEOUT, socket_timeout=5, socket_connect_timeout=2,
            health_check_interval=10, **conn_kwargs)
        client: Redis = redis.Redis(connection_pool=pool)
        return client

    def _shard_url(self, group: list[tuple[int, int]]) -> str:
        slots = ",".join(f"{f}-{last}" for f, last in group)
        return f"{self._safe_url()} slots {slots}"

    def _safe_url(self) -> str:
        u = self.url
        if "@" in u:
            return SCHEME + "***@" + u.split("@", 1)[1]
        return u

    # -- placement --------------------------------------------------------------------
    def topic_tag(self, topic: str) -> str:
        """The hash tag of a channel topic (of its placement: a channel's presence
        topic goes with the channel)."""
        return tag_of(self.placement(topic))

    def slot_of_topic(self, topic: str) -> int:
        return key_slot(self.topic_tag(topic))

    def _topic_index(self, topic: str) -> int:
        return self._slot_shard[self.slot_of_topic(topic)]

    def _key_index(self, key: str) -> int:
        return self._slot_shard[key_slot(key)]

    def shard_for(self, name: str) -> RedisBroker:
        """The shard of a channel topic."""
        return self.shards[self._topic_index(name)]

    def tagged_key(self, key: str, place: str) -> str:
        """``key`` in the slot of ``place`` (a channel topic, or a key whose
        companions share its slot): ``snorky:{<tag>}<the rest>``."""
        tag = self.topic_tag(place)
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else key
        return f"{PREFIX}{{{tag}}}{rest}"

    def liveness_suffix_for(self, key: str) -> str:
        return self.shards[self._key_index(key)].liveness_suffix

    # -- topics (want, publish, ...: ShardedBroker's, by _topic_index) ------------------------
    def wire_publish(self, topic: str, data: bytes) -> tuple[str, bytes]:
        return self._topic_shard(topic).wire_publish(topic, data)

    # -- Redis keys -------------------------------------------------------------------------
    def client_for(self, key: str) -> Redis:
        """The Redis client of the master holding ``key`` (by its slot)."""
        return self.shards[self._key_index(key)].client

    def script(self, source: str) -> ScriptRunner:
        """Register ``source`` on every master: ``run(keys, args, place=None)``
        runs it on the master of ``keys[0]``'s slot (the keys of one call
        share a slot: those placed with a channel carry its tag)."""
        runners = [shard.script(source) for shard in self.shards]
        shard_of_slot = self._slot_shard

        def run(keys: list[str], args: list[Any], place: str | None = None) -> Any:
            return runners[shard_of_slot[key_slot(keys[0])]](keys, args)
        return run

    # -- claims ------------------------------------------------------------------------------
    def _claim_index(self, key: str) -> int:
        return self._key_index(OWN + key)  # ShardedBroker's claim methods, on the key's slot

    def health(self) -> dict[str, Any]:
        answer = super().health()
        answer["cluster"] = True
        return answer

"""Several Redis shards: ``SNORKY_REDIS_URL=redis://a:6379/0,redis://b:6379/0,...``.

A :class:`ShardedBroker` is one :class:`~.redis.RedisBroker` per URL (a
*shard*: its own connections, listener, dispatcher, reconnects), all with
this process's one origin, behind the :class:`~.base.Broker` interface.
Where things live (:mod:`.placement`: a stable hash, jump consistent hash
over the list's order):

* a channel of a routed family (PubSub, Chat, groups) on ``shard_of(topic)``:
  its publications, every process's subscription to it (``want``), its
  history (keys and the Lua script that numbers and publishes a message),
  its presence (entries and changes: a family routed ``placed_with`` the
  channel's, :meth:`~.base.Broker.placement`);
* a key that belongs to no channel on ``shard_of(key)``: shared tables
  (``Service.shared``), DataSync resume states, idempotency claims,
  SockJS session claims;
* process-wide topics on shard 0: the services' replicas (Chat's identity
  membership, Messaging's names, Cursors), Messaging's per-process inboxes,
  ``control``, DataSync's topic, the SockJS relay, barriers;
* heartbeats on every shard: each shard's listener hears its own (the deaf
  listener check), each shard holds this process's liveness key (the claim
  scripts of the keys placed there read it), and a peer heard on any shard
  is alive (one table of peers for the process).

Faults are per shard: a shard that cannot be reached makes the broker
``degraded`` (``/healthz``), the channels and keys placed on it fail as with
one Redis down (``History unavailable``, ``Shared state unavailable``, ...)
while every other shard's keep working, and when it comes back its channels,
and only those, are read again (:meth:`~.base.PeerListener.channels_reconnected`).
Shard 0 down also stops what is process-wide (replicas, control) until it
is back.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gevent

from .base import Broker, Handler
from .history import HistoryStore
from .placement import shard_of
from .redis import RedisBroker, ScriptRunner

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["ShardedBroker", "RedisLike"]


class ShardedBroker(Broker):
    """One :class:`~.redis.RedisBroker` per shard URL (see the module)."""

    distributed = True

    def __init__(self, urls: list[str], heartbeat_interval: float = 1.0, peer_expiry: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__()
        if len(urls) < 2:
            raise ValueError("ShardedBroker needs two shard URLs or more (one: RedisBroker)")
        self.urls = list(urls)
        self.heartbeat_interval = heartbeat_interval
        self.peer_expiry = peer_expiry
        self.peers: dict[bytes, float] = {}
        self.shards = [RedisBroker(url, heartbeat_interval=heartbeat_interval, peer_expiry=peer_expiry,
                                   origin=self.origin, **kwargs) for url in urls]
        for i, shard in enumerate(self.shards):
            shard.peers = self.peers          # a peer heard on any shard is alive
            shard.listeners = self.listeners  # told once of a peer; of each shard's reconnects
            shard.carries_process_topics = i == 0
            shard.covers = functools.partial(self._covers, i)
        self.origin_hex = self.origin.hex()

    # -- placement --------------------------------------------------------------------
    def index_of(self, name: str) -> int:
        """The shard number of ``name`` (a channel topic or a Redis key)."""
        return shard_of(name, len(self.shards))

    def shard_for(self, name: str) -> RedisBroker:
        """The shard of ``name`` (a channel topic or a Redis key)."""
        return self.shards[shard_of(name, len(self.shards))]

    def _topic_index(self, topic: str) -> int:
        """The shard number of a channel topic (by its placement)."""
        return shard_of(self.placement(topic), len(self.shards))

    def _covers(self, index: int, topic: str) -> bool:
        return self._topic_index(topic) == index

    def _topic_shard(self, topic: str) -> RedisBroker:
        """A channel topic of a routed family: its shard; any other topic: shard 0."""
        if topic.rpartition(":")[0] in self.families:
            return self.shards[self._topic_index(topic)]
        return self.shards[0]

    # -- topics ---------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler, echo: bool = False) -> None:
        self._topic_shard(topic).subscribe(topic, handler, echo)

    def route(self, family: str, handler: Handler, echo: bool = False,
              placed_with: str | None = None) -> None:
        super().route(family, handler, echo, placed_with)
        for shard in self.shards:
            shard.route(family, handler, echo)

    def want(self, topic: str) -> None:
        self.shards[self._topic_index(topic)].want(topic)

    def unwant(self, topic: str) -> None:
        self.shards[self._topic_index(topic)].unwant(topic)

    def confirm(self, topic: str, timeout: float = 5.0) -> bool:
        return self.shards[self._topic_index(topic)].confirm(topic, timeout)

    def publish(self, topic: str, data: bytes) -> None:
        self._topic_shard(topic).publish(topic, data)

    def flush(self, timeout: float = 5.0) -> bool:
        jobs = [gevent.spawn(shard.flush, timeout) for shard in self.shards]
        gevent.joinall(jobs, timeout=timeout)
        return all(job.value is True for job in jobs)

    def barrier(self, timeout: float = 2.0) -> bool:
        """Shard 0's barrier (the process-wide topics, which every caller
        orders against), and each other connected shard's, in parallel; a
        disconnected shard other than 0 has nothing to wait for."""
        shards = [s for i, s in enumerate(self.shards) if i == 0 or s.state == "connected"]
        jobs = [gevent.spawn(s.barrier, timeout) for s in shards]
        gevent.joinall(jobs, timeout=timeout + 1)
        return all(job.value is True for job in jobs)

    # -- Redis keys -------------------------------------------------------------------------
    #: the command a script publishes with (:meth:`wire_publish`)
    publish_command = "PUBLISH"

    def wire_publish(self, topic: str, data: bytes) -> tuple[str, bytes]:
        return self.shards[0].wire_publish(topic, data)

    def tagged_key(self, key: str, place: str) -> str:
        """The name of ``key`` placed with ``place``: as it is (placement
        picks the shard; a :class:`~.cluster.ClusterBroker` tags the name)."""
        return key

    def liveness_suffix_for(self, key: str) -> str:
        return ""

    def client_for(self, key: str) -> Redis:
        """The Redis client of the shard holding ``key``."""
        return self.shard_for(key).client

    def script(self, source: str) -> ScriptRunner:
        """Register ``source`` on every shard: ``run(keys, args, place=None)``
        runs it on the shard of ``place`` (a channel's topic), else of ``keys[0]``."""
        runners = [shard.script(source) for shard in self.shards]
        n = len(runners)

        def run(keys: list[str], args: list[Any], place: str | None = None) -> Any:
            return runners[shard_of(place if place is not None else keys[0], n)](keys, args)
        return run

    def history_store(self, namespace: str, family: str, size: int, ttl: float) -> HistoryStore:
        from .redis_history import RedisHistory
        return RedisHistory(self, namespace, family, size, ttl)

    # -- peers and claims -------------------------------------------------------------------
    def heard_from(self, origin: bytes) -> None:
        self.shards[0].heard_from(origin)  # the shared table of peers

    def _claim_index(self, key: str) -> int:
        """The shard number holding the claim of ``key``."""
        return self.index_of(key)

    def claim(self, key: str) -> str | None:
        return self.shards[self._claim_index(key)].claim(key)

    def owner(self, key: str) -> str | None:
        return self.shards[self._claim_index(key)].owner(key)

    def claim_many(self, pairs: Iterable[tuple[str, str]]) -> list[bool]:
        claims = list(pairs)
        by_shard: dict[int, list[int]] = {}
        for n, (key, _) in enumerate(claims):
            by_shard.setdefault(self._claim_index(key), []).append(n)
        result = [False] * len(claims)
        for i, positions in by_shard.items():
            answers = self.shards[i].claim_many([claims[n] for n in positions])
            for n, ok in zip(positions, answers):
                result[n] = ok
        return result

    def release(self, pairs: Iterable[tuple[str, str]], wait: bool = False) -> None:
        by_shard: dict[int, list[tuple[str, str]]] = {}
        for key, token in pairs:
            by_shard.setdefault(self._claim_index(key), []).append((key, token))
        for i, claims in by_shard.items():
            self.shards[i].release(claims, wait)

    # -- life ---------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return all(shard.started for shard in self.shards)

    def start(self) -> None:
        for shard in self.shards:
            shard.start()

    def stop(self) -> None:
        for shard in self.shards:
            shard.stop()

    @property
    def state(self) -> str:  # type: ignore[override]
        """"connected" (every shard), "degraded" (some), "disconnected" (none)."""
        up = sum(shard.state == "connected" for shard in self.shards)
        if up == len(self.shards):
            return "connected"
        return "degraded" if up else "disconnected"

    def health(self) -> dict[str, Any]:
        return {"broker": "redis", "state": self.state, "peers": len(self.peers),
                "channels": sum(len(shard.wanted) for shard in self.shards),
                "shards": [shard.shard_health() for shard in self.shards]}


#: what the Redis stores (history, resume, idempotency, shared tables) work with
RedisLike = RedisBroker | ShardedBroker


"""Brokers carry messages between server processes.

A service delivers to its own process's connections itself and hands the
same encoded bytes to ``broker.publish(topic, data)`` for the other
processes; each of those delivers to its local connections.  The in-process
:class:`~snorky_sync.brokers.local.LocalBroker` (the default) has no other
processes; :class:`~snorky_sync.brokers.redis.RedisBroker` uses Redis
pub/sub (``SNORKY_REDIS_URL``), :class:`~snorky_sync.brokers.sharded.ShardedBroker`
several Redis (a comma-separated list of URLs: channels placed by a stable hash),
:class:`~snorky_sync.brokers.cluster.ClusterBroker` a Redis Cluster (``redis+cluster://``).
"""
import weakref

from .base import Broker, BrokerUnavailable, PeerListener
from .local import LocalBroker

__all__ = ["Broker", "BrokerUnavailable", "LocalBroker", "PeerListener", "make_broker", "flush_all"]

_made: "weakref.WeakSet[Broker]" = weakref.WeakSet()


def flush_all(timeout: float = 1.0) -> None:
    """On the way out: send what the brokers made here still hold (e.g. the
    leaves of the connections just closed), so other processes hear of them now
    rather than at expiry."""
    for broker in list(_made):
        try:
            broker.flush(timeout)
        except Exception:
            pass


def make_broker(redis_url: str | None, heartbeat_interval: float = 1.0,
                peer_expiry: float = 5.0) -> Broker:
    """The broker for a settings value: Redis when a URL is given, several
    Redis shards (:class:`~.sharded.ShardedBroker`) when it is a
    comma-separated list of URLs, a Redis Cluster (:class:`~.cluster.ClusterBroker`)
    for ``redis+cluster://host:port[,host:port...]``, else local."""
    if not redis_url:
        return LocalBroker()
    if peer_expiry <= heartbeat_interval:
        raise ValueError("SNORKY_CLUSTER_EXPIRY must be longer than SNORKY_CLUSTER_HEARTBEAT")
    from .placement import split_urls
    from .redis import RedisBroker
    broker: Broker
    if redis_url.strip().startswith("redis+cluster://"):
        from .cluster import ClusterBroker
        broker = ClusterBroker(redis_url.strip(), heartbeat_interval=heartbeat_interval, peer_expiry=peer_expiry)
        _made.add(broker)
        return broker
    urls = split_urls(redis_url) if "," in redis_url else [redis_url]
    if len(urls) > 1:
        from .sharded import ShardedBroker
        broker = ShardedBroker(urls, heartbeat_interval=heartbeat_interval, peer_expiry=peer_expiry)
    else:
        broker = RedisBroker(urls[0], heartbeat_interval=heartbeat_interval, peer_expiry=peer_expiry)
    _made.add(broker)
    return broker

"""Brokers carry messages between server processes.

A service delivers to its own process's connections itself and hands the
same encoded bytes to ``broker.publish(topic, data)`` for the other
processes; each of those delivers to its local connections.  The in-process
:class:`~snorky_sync.brokers.local.LocalBroker` (the default) has no other
processes; :class:`~snorky_sync.brokers.redis.RedisBroker` uses Redis
pub/sub (``SNORKY_REDIS_URL``).
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
    """The broker for a settings value: Redis when a URL is given, else local."""
    if not redis_url:
        return LocalBroker()
    if peer_expiry <= heartbeat_interval:
        raise ValueError("SNORKY_CLUSTER_EXPIRY must be longer than SNORKY_CLUSTER_HEARTBEAT")
    from .redis import RedisBroker
    broker = RedisBroker(redis_url, heartbeat_interval=heartbeat_interval, peer_expiry=peer_expiry)
    _made.add(broker)
    return broker

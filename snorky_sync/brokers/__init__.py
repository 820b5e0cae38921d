"""Brokers carry messages between server processes.

A service delivers to its own process's connections itself and hands the
same encoded bytes to ``broker.publish(topic, data)`` for the other
processes; each of those delivers to its local connections.  The in-process
:class:`~snorky_sync.brokers.local.LocalBroker` (the default) has no other
processes; :class:`~snorky_sync.brokers.redis.RedisBroker` uses Redis
pub/sub (``SNORKY_REDIS_URL``).
"""
from .base import Broker
from .local import LocalBroker

__all__ = ["Broker", "LocalBroker", "make_broker"]


def make_broker(redis_url: str | None) -> Broker:
    """The broker for a settings value: Redis when a URL is given, else local."""
    if not redis_url:
        return LocalBroker()
    from .redis import RedisBroker
    return RedisBroker(redis_url)

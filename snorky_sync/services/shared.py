"""A small piece of state shared by every process of a service (``Service.shared``).

``self.shared`` holds named tables of JSON values by field (a poll's votes by
option, a room's settings): kept in this process when the service has no
distributed broker, in Redis hashes (one per table) when it has one
(``SNORKY_REDIS_URL``; with several shards each table on its key's shard),
so every worker reads and changes the same values.
:meth:`SharedState.incr` is atomic across processes (``HINCRBY``).

With Redis each call is one round trip, made while the calling command holds
the service's lock; if Redis cannot be reached the call raises
:class:`SharedStateUnavailable` (an :class:`~snorky_sync.services.base.RPCError`:
an RPC command raising it answers ``Shared state unavailable``).  Tables in
Redis outlive the processes (delete them with :meth:`SharedState.delete`);
in process they live as long as the process.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import wire
from ..brokers.base import channel_topic
from .base import RPCError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Service

__all__ = ["SharedState", "SharedStateUnavailable"]

#: Redis key of a table: ``snorky:shared:<service>:<BLAKE2b of the table name>``
#: (the name may be client data: none of its text reaches a Redis key name)
KEY_PREFIX = "snorky:shared:"


class SharedStateUnavailable(RPCError):
    """Redis could not be reached for the shared state."""

    def __init__(self, reason: str = "") -> None:
        super().__init__("Shared state unavailable")
        self.reason = reason


class SharedState:
    """``service.shared``: tables of JSON values by field (see the module)."""

    __slots__ = ("service", "local")

    def __init__(self, service: Service) -> None:
        self.service = service
        self.local: dict[str, dict[str, Any]] = {}

    def _redis(self, key: str = "") -> Any:
        """The Redis client holding ``key`` when the broker is distributed
        (with several shards, the key's shard), else None."""
        broker = self.service.broker
        if broker is None or not broker.distributed:
            return None
        return broker.client_for(key)  # type: ignore[attr-defined]

    def _key(self, table: str) -> str:
        if not isinstance(table, str):
            raise TypeError(f"shared table names are strings, got {type(table).__name__}")
        return KEY_PREFIX + channel_topic(self.service.name, table.encode("utf-8", "surrogatepass"))

    def _call(self, fn: Any, key: str) -> Any:
        redis = self._redis(key)
        import redis as redis_mod  # installed: the broker is a RedisBroker
        try:
            return fn(redis, key)
        except redis_mod.RedisError as exc:
            raise SharedStateUnavailable(str(exc)) from exc

    def incr(self, table: str, field: str, by: int = 1) -> int:
        """Add ``by`` to the integer ``field`` of ``table`` (0 if absent),
        atomically across processes; returns the new value."""
        if not isinstance(by, int) or isinstance(by, bool):
            raise TypeError(f"incr(by=...) is an integer, got {type(by).__name__}")
        if self._redis() is None:
            self._key(table)
            row = self.local.setdefault(table, {})
            value: int = row.get(field, 0) + by
            row[field] = value
            return value
        return int(self._call(lambda r, k: r.hincrby(k, field, by), self._key(table)))

    def set(self, table: str, field: str, value: Any) -> None:
        """Set ``field`` of ``table`` to the JSON value ``value``."""
        data = wire.encode(value)
        if self._redis() is None:
            self._key(table)
            self.local.setdefault(table, {})[field] = wire.decode(data)  # a copy, as Redis keeps
            return
        self._call(lambda r, k: r.hset(k, field, data), self._key(table))

    def get(self, table: str) -> dict[str, Any]:
        """Every field of ``table`` and its value (``{}`` for a table never written)."""
        if self._redis() is None:
            self._key(table)
            return dict(self.local.get(table, {}))
        raw = self._call(lambda r, k: r.hgetall(k), self._key(table))
        return {field.decode("utf-8", "surrogatepass"): wire.decode(value)
                for field, value in raw.items()}

    def delete(self, table: str, field: str | None = None) -> None:
        """Forget ``field`` of ``table``, or the whole table."""
        if self._redis() is None:
            self._key(table)
            if field is None:
                self.local.pop(table, None)
            else:
                self.local.get(table, {}).pop(field, None)
            return
        if field is None:
            self._call(lambda r, k: r.delete(k), self._key(table))
        else:
            self._call(lambda r, k: r.hdel(k, field), self._key(table))

"""The Redis broker: Redis pub/sub carries messages between processes and hosts.

One Redis channel per topic (``snorky:<topic>``).  Each message is this
process's 8-byte origin followed by the data, so a process ignores what it
published itself (it has delivered locally already).  Publishes go through
one connection per process, pipelined per burst, so the others receive them
in publish order.

Faults: when Redis is unreachable the listener logs at ERROR, marks the
broker ``disconnected`` (see ``/healthz``), and reconnects with exponential
backoff (0.1 s doubling up to 5 s), re-subscribing every topic.  Meanwhile
local work goes on; messages published by this process while Redis is down
reach only local clients, and messages other processes publish in that
window are lost to this one (Redis pub/sub keeps nothing): both are counted
(``broker_publish_failed``, ``broker_disconnects``).
"""
from __future__ import annotations

import logging
import random

import gevent
import gevent.event
import gevent.monkey

from ..metrics import counters
from .base import Broker

__all__ = ["RedisBroker"]

log = logging.getLogger("snorky_sync.brokers.redis")

PREFIX = "snorky:"


class RedisBroker(Broker):
    """Broker over Redis pub/sub (redis-py with hiredis)."""

    state = "disconnected"
    distributed = True

    def __init__(self, url: str, max_backoff: float = 5.0) -> None:
        super().__init__()
        if not gevent.monkey.is_module_patched("socket"):
            raise RuntimeError(
                "RedisBroker needs gevent.monkey.patch_all() at program start "
                "(gunicorn's gevent workers and `python -m snorky_sync serve` do it)")
        import redis
        self._redis_mod = redis
        self.url = url
        self.max_backoff = max_backoff
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                           health_check_interval=10)
        self._listener: gevent.Greenlet | None = None
        self._sender: gevent.Greenlet | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._pubsub = None
        self.connected_event = gevent.event.Event()

    def subscribe(self, topic: str, handler, echo: bool = False) -> None:
        super().subscribe(topic, handler, echo)
        ps = self._pubsub
        if ps is not None and self.state == "connected":
            try:
                ps.subscribe(PREFIX + topic)
            except Exception:
                pass  # the listener re-subscribes everything on reconnect

    def publish(self, topic: str, data: bytes) -> None:
        """Queue a publish; a sender greenlet pipelines everything queued in
        one burst to Redis, in order (one round trip instead of one each)."""
        self._outbox.append((PREFIX + topic, self.origin + data))
        if self._sender is None:
            self._sender = gevent.spawn(self._send_outbox)

    def flush(self, timeout: float = 5.0) -> None:
        if self._sender is None and self._outbox:
            self._sender = gevent.spawn(self._send_outbox)
        sender = self._sender
        if sender is not None and sender is not gevent.getcurrent():
            sender.join(timeout)

    def _send_outbox(self) -> None:
        try:
            while self._outbox:
                gevent.idle()
                batch, self._outbox = self._outbox, []
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    pipe.execute()
                except self._redis_mod.RedisError as exc:
                    counters["broker_publish_failed"] += len(batch)
                    log.error("Redis publish of %d messages failed (%s): delivered to this "
                              "process only", len(batch), exc)
        finally:
            self._sender = None

    def start(self) -> None:
        if self._listener is None:
            self._listener = gevent.spawn(self._listen)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.kill(block=False)
            self._listener = None

    def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                ps = self.client.pubsub(ignore_subscribe_messages=True)
                if self.handlers:
                    ps.subscribe(*[PREFIX + t for t in self.handlers])
                else:
                    ps.ping()
                self._pubsub = ps
                if self.state != "connected":
                    log.info("Redis broker connected to %s (%d topics)", self._safe_url(), len(self.handlers))
                self.state = "connected"
                self.connected_event.set()
                backoff = 0.1
                self._dispatch(ps)
            except gevent.GreenletExit:
                raise
            except Exception as exc:
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
                gevent.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    def _dispatch(self, ps) -> None:
        origin = self.origin
        handlers = self.handlers
        subscribed = set(handlers)
        while True:
            if len(subscribed) != len(handlers):  # topics added while connected
                new = [t for t in handlers if t not in subscribed]
                ps.subscribe(*[PREFIX + t for t in new])
                subscribed.update(new)
            msg = ps.get_message(timeout=1.0)
            # drain everything already received before yielding, so the
            # frames of a burst reach each client's queue together and the
            # flusher writes them with one send per client
            while msg is not None:
                self._handle(msg, origin, handlers)
                msg = ps.get_message(timeout=0.0)

    def _handle(self, msg, origin: bytes, handlers) -> None:
        data = msg["data"]
        topic = msg["channel"][len(PREFIX):].decode()
        if data[:8] == origin and topic not in self.echo:
            return
        handler = handlers.get(topic)
        if handler is None:
            return
        try:
            handler(data[8:])
        except Exception:
            log.exception("broker handler for %s failed", topic)

    def _safe_url(self) -> str:
        u = self.url
        if "@" in u:
            scheme, rest = u.split("://", 1)
            return scheme + "://***@" + rest.split("@", 1)[1]
        return u

    def health(self) -> dict:
        return {"broker": "redis", "state": self.state}

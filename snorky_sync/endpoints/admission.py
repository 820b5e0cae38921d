"""Connection-rate limits: the first thing a WebSocket handshake meets.

After a restart every client reconnects within seconds.  :class:`ConnectRate`
keeps a token bucket for the whole process (``SNORKY_CONNECT_RATE`` /
``SNORKY_CONNECT_BURST``) and one per client address
(``SNORKY_CONNECT_RATE_PER_IP`` / ``SNORKY_CONNECT_BURST_PER_IP``); a handshake
that finds either empty is answered ``503`` with ``Retry-After`` before any
other work (origin, ``authenticate``, the upgrade) is done for it.

``Retry-After`` spreads the retries: it is a random whole number of seconds
from 1 up to the time the bucket needs to admit everyone refused lately
(an exponentially decayed count of refusals divided by the rate), so a
crowd told to come back does not come back at the same instant.

The client address is ``REMOTE_ADDR``; when that is one of
``SNORKY_TRUSTED_PROXIES``, the last ``X-Forwarded-For`` entry that is not a
trusted proxy.
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..logs import RateLimitedLogger
from ..metrics import counters
from .limits import TokenBucket

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ConnectRate", "client_address"]

_monotonic = time.monotonic
_warn = RateLimitedLogger(logging.getLogger("snorky_sync.websocket"))
_MAX_ADDRESSES = 100_000  # per-address buckets kept; beyond this the full ones are dropped


def client_address(environ: WSGIEnvironment, trusted_proxies: Sequence[str] | None = None) -> str:
    """The address a connection comes from, believing only trusted proxies."""
    addr: str = environ.get("REMOTE_ADDR", "-")
    if trusted_proxies and addr in trusted_proxies:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        hops: list[str] = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in trusted_proxies:
                return hop
    return addr


class ConnectRate:
    """Token buckets for new connections: per process and per client address
    (:class:`~.limits.TokenBucket`; rate 0: that bucket is off)."""

    def __init__(self, rate: float = 0.0, burst: float = 0.0, per_ip_rate: float = 0.0,
                 per_ip_burst: float = 0.0, trusted_proxies: Sequence[str] | None = None) -> None:
        self.rate = rate
        self.per_ip_rate = per_ip_rate
        self.per_ip_burst = max(per_ip_burst, 1.0)
        self.trusted_proxies = tuple(trusted_proxies or ())
        now = _monotonic()
        self.bucket = TokenBucket(rate, burst, now)
        self.pressure = 0.0          # refusals, decaying by half every second
        self.pressure_at = now
        self.addresses: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rate or self.per_ip_rate)

    def admit(self, environ: WSGIEnvironment) -> int | None:
        """None to go on with the handshake, else the ``Retry-After`` seconds."""
        now = _monotonic()
        wait = 0.0
        bucket = self.bucket
        if self.rate and bucket.available(1.0, now):
            wait = self._crowd_wait(now, self.rate)
        mine = None
        if self.per_ip_rate:
            addr = client_address(environ, self.trusted_proxies)
            mine = self.addresses.get(addr)
            if mine is None:
                if len(self.addresses) >= _MAX_ADDRESSES:
                    self._prune(now)
                mine = self.addresses[addr] = TokenBucket(self.per_ip_rate, self.per_ip_burst, now)
            wait = max(wait, mine.available(1.0, now))
        if wait:
            return max(1, math.ceil(random.uniform(0.0, wait)))
        bucket.take(1.0, now)  # both have a token: spend one of each
        if mine is not None:
            mine.take(1.0, now)
        return None

    def refuse(self, environ: WSGIEnvironment) -> int | None:
        """:meth:`admit` for a new connection (WebSocket or SockJS session):
        None to go on, else the ``Retry-After`` seconds, the refusal counted
        (``connections_refused_rate``) and logged."""
        retry = self.admit(environ)
        if retry is not None:
            counters["connections_refused_rate"] += 1
            _warn.warning("connect-rate", "connection rate limit: refusing %s (retry after %ss)",
                          environ.get("REMOTE_ADDR", "-"), retry)
        return retry

    def _crowd_wait(self, now: float, rate: float) -> float:
        """Seconds the bucket needs for everyone refused lately (and this one)."""
        self.pressure = self.pressure * 0.5 ** (now - self.pressure_at) + 1.0
        self.pressure_at = now
        return max(1.0, (self.pressure + 1.0 - self.bucket.tokens) / rate)

    def _prune(self, now: float) -> None:
        full = [a for a, b in self.addresses.items() if b.refill(now) >= b.burst]
        for a in full:
            del self.addresses[a]
        if len(self.addresses) >= _MAX_ADDRESSES:  # a flood of addresses: start over
            self.addresses.clear()

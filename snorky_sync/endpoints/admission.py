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

from ..logs import RateLimitedLogger
from ..metrics import counters

__all__ = ["ConnectRate", "client_address"]

_monotonic = time.monotonic
_warn = RateLimitedLogger(logging.getLogger("snorky_sync.websocket"))
_MAX_ADDRESSES = 100_000  # per-address buckets kept; beyond this the full ones are dropped


def client_address(environ, trusted_proxies: Sequence[str] | None = None) -> str:
    """The address a connection comes from, believing only trusted proxies."""
    addr = environ.get("REMOTE_ADDR", "-")
    if trusted_proxies and addr in trusted_proxies:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if hop not in trusted_proxies:
                return hop
    return addr


class ConnectRate:
    """Token buckets for new connections: per process and per client address."""

    def __init__(self, rate: float = 0.0, burst: float = 0.0, per_ip_rate: float = 0.0,
                 per_ip_burst: float = 0.0, trusted_proxies: Sequence[str] | None = None) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.per_ip_rate = per_ip_rate
        self.per_ip_burst = max(per_ip_burst, 1.0)
        self.trusted_proxies = tuple(trusted_proxies or ())
        self.tokens = self.burst
        self.last = _monotonic()
        self.pressure = 0.0          # refusals, decaying by half every second
        self.pressure_at = self.last
        self.addresses: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rate or self.per_ip_rate)

    def admit(self, environ) -> int | None:
        """None to go on with the handshake, else the ``Retry-After`` seconds."""
        now = _monotonic()
        wait = 0.0
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                wait = self._crowd_wait(now, self.rate)
        bucket = None
        if self.per_ip_rate:
            addr = client_address(environ, self.trusted_proxies)
            bucket = self.addresses.get(addr)
            if bucket is None:
                if len(self.addresses) >= _MAX_ADDRESSES:
                    self._prune(now)
                bucket = self.addresses[addr] = [self.per_ip_burst, now]
            else:
                bucket[0] = min(self.per_ip_burst, bucket[0] + (now - bucket[1]) * self.per_ip_rate)
                bucket[1] = now
            if bucket[0] < 1.0:
                wait = max(wait, (1.0 - bucket[0]) / self.per_ip_rate)
        if wait:
            return max(1, math.ceil(random.uniform(0.0, wait)))
        if self.rate:
            self.tokens -= 1.0
        if bucket is not None:
            bucket[0] -= 1.0
        return None

    def refuse(self, environ) -> int | None:
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
        return max(1.0, (self.pressure + 1.0 - self.tokens) / rate)

    def _prune(self, now: float) -> None:
        rate, burst = self.per_ip_rate, self.per_ip_burst
        full = [a for a, (tokens, at) in self.addresses.items() if tokens + (now - at) * rate >= burst]
        for a in full:
            del self.addresses[a]
        if len(self.addresses) >= _MAX_ADDRESSES:  # a flood of addresses: start over
            self.addresses.clear()

"""The limits every endpoint shares: one token bucket, and a connection's input budget.

Every surface (WebSocket, every SockJS transport, the SockJS WebSocket) charges
a client's input to an :class:`InputBudget` *per message* (not per frame or per
HTTP body: one SockJS frame or ``xhr_send`` body may carry many messages) and
*per byte*:

* messages over ``rate_limit``/s (burst ``rate_burst``) close the connection
  with 1008 "Rate limit exceeded", as before (logged, counted);
* bytes over ``byte_rate``/s (burst ``byte_burst``) are not an error: the
  endpoint stops reading that client for :meth:`InputBudget.delay` seconds
  (TCP backpressure, or a delayed ``xhr_send`` answer), so one client's
  input costs a bounded share of the worker whatever it sends.

Buckets are plain data with a clock passed in: no I/O, unit-testable.
"""
from __future__ import annotations

import time

__all__ = ["TokenBucket", "InputBudget", "RATE_EXCEEDED"]

_monotonic = time.monotonic

#: the close reason of a connection over its message rate (code 1008)
RATE_EXCEEDED = "Rate limit exceeded"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; ``rate`` 0 = unlimited."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0) if rate else 0.0
        self.tokens = self.burst
        self.at = _monotonic() if now is None else now

    def refill(self, now: float) -> float:
        """Add what the time since the last call earned; the tokens now."""
        tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.tokens, self.at = tokens, now
        return tokens

    def take(self, n: float, now: float | None = None) -> bool:
        """Spend ``n`` tokens (the balance may go negative); False when it did."""
        if not self.rate:
            return True
        tokens = self.refill(_monotonic() if now is None else now) - n
        self.tokens = tokens
        return tokens >= 0

    def available(self, n: float, now: float) -> float:
        """Seconds until ``n`` tokens are saved (0: they are now); spends nothing."""
        tokens = self.refill(now)
        return 0.0 if tokens >= n or not self.rate else (n - tokens) / self.rate

    def wait(self, now: float | None = None) -> float:
        """Seconds until the balance is back to zero (0 when it is not negative)."""
        if not self.rate:
            return 0.0
        tokens = self.refill(_monotonic() if now is None else now)
        return 0.0 if tokens >= 0 else -tokens / self.rate


class InputBudget:
    """One connection's input limits: messages (exceeding closes) and bytes (exceeding throttles)."""

    __slots__ = ("messages", "bytes")

    def __init__(self, rate_limit: float, rate_burst: float, byte_rate: float, byte_burst: float,
                 now: float | None = None) -> None:
        now = _monotonic() if now is None else now
        self.messages = TokenBucket(rate_limit, rate_burst, now)
        self.bytes = TokenBucket(byte_rate, byte_burst, now)

    def charge(self, messages: int, nbytes: int, now: float | None = None) -> bool:
        """Count input; False when the message rate is exceeded (close with 1008)."""
        now = _monotonic() if now is None else now
        self.bytes.take(nbytes, now)
        return self.messages.take(messages, now)

    def delay(self, now: float | None = None) -> float:
        """Seconds to stop reading this client before its next input (0: read on)."""
        return self.bytes.wait(now)

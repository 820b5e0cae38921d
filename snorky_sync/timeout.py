"""Timers behind a factory (Snorky 0.1's ``snorky.timeout``), on gevent.

``factory.call_later(delay, callback, *args, **kwargs)`` returns a handle
whose ``cancel()`` stops the timer.  :class:`DataSyncBackend` takes a
``timeout_factory=`` (as in 0.1) to decide when unacquired subscriptions
expire; tests can pass a factory that runs timers on demand.

0.1's names ``TornadoTimeoutHandle`` and ``TornadoTimeoutFactory`` are the
gevent ones here: the same interface, no Tornado.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent

__all__ = ["GeventTimeoutHandle", "GeventTimeoutFactory", "TimeoutFactory",
           "TornadoTimeoutHandle", "TornadoTimeoutFactory"]


class GeventTimeoutHandle:
    """A pending call; :meth:`cancel` it at most once."""

    __slots__ = ("greenlet", "cancelled")

    def __init__(self, greenlet: gevent.Greenlet) -> None:
        self.greenlet = greenlet
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the timer (RuntimeError if it was already cancelled).  Called
        from inside the callback itself, it only marks the handle."""
        if self.cancelled:
            raise RuntimeError("Already cancelled")
        self.cancelled = True
        if self.greenlet is not gevent.getcurrent():
            self.greenlet.kill(block=False)


class _GeventTimeoutFactory:
    """Makes :class:`GeventTimeoutHandle` timers (``gevent.spawn_later``)."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> GeventTimeoutHandle:
        """Run ``callback(*args, **kwargs)`` in ``delay`` seconds, in its own greenlet."""
        return GeventTimeoutHandle(gevent.spawn_later(delay, callback, *args, **kwargs))


TimeoutFactory = _GeventTimeoutFactory
GeventTimeoutFactory = _GeventTimeoutFactory()
"""The default factory (an instance, as 0.1's ``TornadoTimeoutFactory`` was)."""

TornadoTimeoutHandle = GeventTimeoutHandle
TornadoTimeoutFactory = GeventTimeoutFactory

"""Waiting on gevent's hub without being starved by a busy one.

``gevent.idle()`` waits until the event loop has nothing else pending: the
right moment to flush what a burst of work queued, or to let other
connections go first.  But a worker that is never idle (hostile clients
keeping every loop iteration busy, issue #21) never wakes such a waiter:
replies stayed queued for seconds while the process served everyone else.
:func:`idle` waits for the idle moment *or* ``max_wait`` seconds, whichever
comes first, so the latency it adds is bounded under any load.
"""
from __future__ import annotations

from gevent.hub import Waiter, get_hub

__all__ = ["idle"]


def idle(max_wait: float) -> None:
    """Wait until the hub is idle, or at most ``max_wait`` seconds."""
    hub = get_hub()
    loop = hub.loop
    waiter = Waiter(hub)
    quiet = loop.idle()
    timer = loop.timer(max_wait)
    try:
        quiet.start(waiter.switch, None)
        timer.start(waiter.switch, None)
        waiter.get()
    finally:
        quiet.close()
        timer.close()

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

from collections.abc import Callable
from typing import TypeVar

from gevent.hub import Waiter, get_hub

__all__ = ["idle", "of_hub"]

_T = TypeVar("_T")


def of_hub(name: str, make: Callable[[], _T]) -> _T:
    """The current hub's object ``name``, made by ``make()`` on first use: the
    event loop's own machinery (its flusher, its reader parker), one per hub."""
    hub = get_hub()
    obj = getattr(hub, name, None)
    if obj is None:
        obj = make()
        setattr(hub, name, obj)
    return obj


# Free (idle watcher, timer) pairs per hub, by max_wait: the callers use a few
# constant waits, a waiter takes a pair for itself and gives it back stopped.
_FREE = "snorky_idle_pairs"
MAX_KEYS = 8       # distinct max_wait values pooled (others get a fresh pair each call)
MAX_FREE = 64      # free pairs kept per max_wait (more concurrent waiters: closed after use)


def idle(max_wait: float) -> None:
    """Wait until the hub is idle, or at most ``max_wait`` seconds."""
    hub = get_hub()
    try:
        free = getattr(hub, _FREE)
    except AttributeError:
        free = {}
        setattr(hub, _FREE, free)
    pairs = free.get(max_wait)
    if pairs:
        quiet, timer = pairs.pop()
    else:
        loop = hub.loop
        quiet, timer = loop.idle(), loop.timer(max_wait)
    waiter = Waiter(hub)  # one per call: a pair's callbacks only ever reach this call
    try:
        quiet.start(waiter.switch, None)
        timer.start(waiter.switch, None)
        waiter.get()
    finally:
        # stopped, neither can fire (libev drops a pending event on stop) into
        # the next waiter that takes the pair
        quiet.stop()
        timer.stop()
        pairs = free.get(max_wait)  # (made meanwhile by another waiter, maybe)
        if pairs is None and len(free) < MAX_KEYS:
            pairs = free[max_wait] = []
        if pairs is not None and len(pairs) < MAX_FREE:
            pairs.append((quiet, timer))
        else:
            quiet.close()
            timer.close()

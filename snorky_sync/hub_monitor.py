"""Seeing a blocked event loop: gevent's own monitor, logged and counted.

Every connection of a process shares one gevent event loop (the hub).  A call
that blocks without yielding to it (``time.sleep`` or socket I/O in a process
that is not monkey-patched, a database driver gevent cannot patch, CPU-bound
work) freezes every connection until it returns.  :func:`start` turns on
gevent's monitor thread (``gevent.config.monitor_thread``), which notices when
the loop has not switched for ``max_blocking_time`` seconds
(``SNORKY_MAX_BLOCKING_TIME``); each such block is logged once, when the loop
runs again, with the blocking greenlet's stack (rate-limited), and counted as
``hub_blocked`` (``snorky_hub_blocked_total`` in ``/metrics``).

``snorky-sync serve``, :func:`snorky_sync.serve` and the shipped gunicorn
configuration (:mod:`snorky_sync.gunicorn_conf`) start it.  Elsewhere (your own
gunicorn config)::

    from snorky_sync.hub_monitor import start, warn_if_not_patched
    warn_if_not_patched()
    start(0.5)
"""
from __future__ import annotations

import logging
import sys
import time
import traceback
import warnings
from collections import deque
from typing import Any

import gevent
from gevent import events, monkey

from .logs import RateLimitedLogger
from .metrics import counters

__all__ = ["start", "warn_if_not_patched", "is_patched"]

log = logging.getLogger("snorky_sync.blocking")
_rlog = RateLimitedLogger(log, burst=5, period=60.0)

#: innermost frames of the blocking greenlet's stack shown in the log line
STACK_FRAMES = 12

# (greenlet id, greenlet text, monotonic time of the report, stack text): appended
# by gevent's monitor thread, taken by the hub once it runs again (deque: thread-safe)
_reports: deque[tuple[int, str, float, str]] = deque()
_max_blocking_time = 0.0
_last_collect = float("-inf")  # monotonic time the hub last took reports


def is_patched() -> bool:
    """Whether gevent has monkey-patched this process's sockets and ``time.sleep``."""
    return bool(monkey.is_module_patched("socket") and monkey.is_module_patched("time"))


def warn_if_not_patched(logger: logging.Logger | None = None) -> bool:
    """Log a warning when the process is not monkey-patched; whether it is."""
    if is_patched():
        return True
    (logger or log).warning(
        "this process is not monkey-patched by gevent: a blocking call (time.sleep, socket or "
        "database I/O) freezes every connection of the process. Call "
        "`from gevent import monkey; monkey.patch_all()` first thing in your program, or serve "
        "with `snorky-sync serve module:app` or gunicorn -k gevent")
    return False


def start(max_blocking_time: float) -> bool:
    """Start gevent's monitor thread for this thread's hub, reporting blocks
    longer than ``max_blocking_time`` seconds (0: off).  Whether it runs.

    Call it in the process (and thread) that serves, after forking.  A monitor
    that already runs (``GEVENT_MONITOR_THREAD_ENABLE``) keeps its period.
    """
    global _max_blocking_time
    if max_blocking_time <= 0:
        return False
    gevent.config.max_blocking_time = max_blocking_time
    gevent.config.monitor_thread = True
    # gevent's own report is every greenlet and thread of the process, printed to
    # stderr on every check: the log line below says what matters, once per block
    gevent.config.print_blocking_reports = False
    _max_blocking_time = gevent.config.max_blocking_time
    if _on_event not in events.subscribers:
        events.subscribers.append(_on_event)
    hub = gevent.get_hub()
    with warnings.catch_warnings():
        # its memory watch (needs psutil, off unless GEVENT_MAX_MEMORY_USAGE is set) is not asked for
        warnings.simplefilter("ignore")
        thread = hub.start_periodic_monitoring_thread()
    return thread is not None


def _on_event(event: Any) -> None:
    """In gevent's monitor thread: note the report, wake the hub for it."""
    if not isinstance(event, events.EventLoopBlocked):
        return
    hub = event.hub or gevent.get_hub()
    try:
        frame = sys._current_frames()[hub.thread_ident]
        stack = "".join(traceback.format_list(traceback.extract_stack(frame)[-STACK_FRAMES:]))
    except KeyError:
        stack = "(no stack: the hub's thread is gone)\n"
    _reports.append((id(event.greenlet), _describe(event.greenlet), time.monotonic(), stack))
    # runs when the loop runs again, that is when the block is over
    hub.loop.run_callback_threadsafe(_collect)


def _describe(greenlet: Any) -> str:
    try:
        return str(greenlet)
    except Exception:  # a greenlet's repr must not break the report
        return type(greenlet).__name__


def _collect() -> None:
    """In the hub, once it runs again: one count and one log line per block."""
    global _last_collect
    now = time.monotonic()
    blocks: list[tuple[str, float, str]] = []
    last = None
    while _reports:
        gid, name, at, stack = _reports.popleft()
        # A new block is first reported a whole period after the hub last ran (the
        # monitor needs one period with switches, then one without).  A report sooner
        # is the end of the block already taken: the monitor saw it still blocked, then
        # spent the time the block took to end formatting its report (seen: 3 ms late).
        if at - _last_collect < _max_blocking_time / 2:
            continue
        if gid != last:  # the monitor reports a long block once per period: one block
            blocks.append((name, at, stack))
            last = gid
    _last_collect = now
    for name, at, stack in blocks:
        counters["hub_blocked"] += 1
        # the loop had not switched for at least one period when the first report came
        seconds = now - at + _max_blocking_time
        gevent.spawn(_log, name, seconds, stack)  # not in the hub: a log handler may wait on a lock


def _log(name: str, seconds: float, stack: str) -> None:
    _rlog.warning(
        "hub_blocked",
        "the event loop was blocked for at least %.1f s (over SNORKY_MAX_BLOCKING_TIME=%g s): "
        "every connection of this process waited. Blocking call (time.sleep or I/O not patched by "
        "gevent, CPU-bound work) in %s at:\n%s",
        seconds, _max_blocking_time, name, stack.rstrip("\n"))

"""The flusher: one greenlet per gevent hub that writes every dirty client.

:meth:`Client.send_frame <snorky_sync.client.Client.send_frame>` only appends
a frame to the client's queue and, the first time in a burst, puts the client
on its flusher's dirty list (:meth:`Flusher.schedule`).  The flusher waits for
the hub to be idle (at most :data:`FLUSH_MAX_WAIT`: :func:`snorky_sync.hub.idle`)
— so that all the work of the current burst has queued its frames — and then
gives each dirty client its turn (``client._flush()``: one non-blocking send
of its whole backlog).  No greenlet is spawned or switched to per client.

Coalescing: when the frames a flush wrote include broadcasts to at least
``coalesce_sends`` recipients in all (counted by :func:`send_to_all`), the
next flush waits ``coalesce_delay`` seconds: under a stream of broadcasts
(Cursors at mouse speed, a busy chat room) every recipient then gets one send
per few frames instead of one per frame.  Flushes of replies and single sends
only (however many connections) are never delayed: a closed loop of RPC
callers would wait on every round trip.

The flusher belongs to the event loop, not to an app: :meth:`Flusher.of_hub`
is the current hub's.  Tests make their own (``Client(..., flusher=...)``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import gevent
import gevent.event

from . import hub
from .client_state import Writing

_QUEUED = Writing.QUEUED

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Flusher", "send_to_all", "FLUSH_MAX_WAIT"]

#: the longest a flush waits for the hub to be idle (a hub that never is, under
#: load, must not hold replies back: snorky_sync.hub)
FLUSH_MAX_WAIT = 0.005

_idle = hub.idle
_sleep = gevent.sleep
_spawn = gevent.spawn


class Flusher:
    """Dirty clients of one hub and the greenlet that writes them."""

    __slots__ = ("coalesce_sends", "coalesce_delay", "fanned", "_dirty", "_wake", "_greenlet")

    def __init__(self, coalesce_sends: int = 32, coalesce_delay: float = 0.002) -> None:
        self.coalesce_sends = coalesce_sends
        self.coalesce_delay = coalesce_delay
        self.fanned = 0  # recipients of broadcasts (send_to_all) queued since the last flush
        self._dirty: list[Client] = []
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def __repr__(self) -> str:
        return f"<Flusher dirty={len(self._dirty)} coalesce={self.coalesce_sends}/{self.coalesce_delay}s>"

    @staticmethod
    def of_hub() -> Flusher:
        """The current gevent hub's flusher (made on first use)."""
        return hub.of_hub("snorky_flusher", Flusher)

    def schedule(self, client: Client) -> None:
        """``client`` has frames to write: its turn comes at the next flush."""
        client.writing = _QUEUED
        self._dirty.append(client)
        self._wake.set()
        greenlet = self._greenlet
        if greenlet is None or greenlet.dead:
            self._greenlet = _spawn(self._run)

    def stop(self) -> None:
        """Kill the greenlet (a test's own flusher); clients scheduled later restart it."""
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            _idle(FLUSH_MAX_WAIT)
            batch, self._dirty = self._dirty, []
            for client in batch:
                client._flush()
            fanned, self.fanned = self.fanned, 0
            if fanned >= self.coalesce_sends:
                # broadcasts to many: let the next ones gather for a moment, so
                # each recipient gets one send for several frames
                _sleep(self.coalesce_delay)


def send_to_all(clients: Iterable[Client], frame: bytes) -> int:
    """Queue one encoded frame to many clients (a broadcast); returns how many.

    Counted for the flusher of the recipients, which coalesces streams of
    broadcasts."""
    n = 0
    flusher = None
    for client in clients:
        client.send_frame(frame)
        flusher = client.flusher
        n += 1
    if flusher is not None:
        flusher.fanned += n
    return n

"""Connections whose credentials expire: closed with 4001 ``Token expired``
when their expiry passes (unless a refresh moved it).

An ``authenticate`` hook opts in by returning
:class:`~snorky_sync.endpoints.access.Authenticated` with ``expires`` (a
``time.time()`` value) instead of a bare identity.  Each endpoint keeps one
:class:`Expiries`: a heap of deadlines and one greenlet that sleeps until the
earliest, so a connection costs a heap entry and a dict entry (no timer, no
greenlet of its own), and an endpoint whose hook returns no expiry has no
greenlet at all.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
import weakref
from typing import TYPE_CHECKING

import gevent
import gevent.event

from ..logs import RateLimitedLogger
from ..metrics import counters

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Expiries", "expiries_of", "TOKEN_EXPIRED_CODE", "TOKEN_EXPIRED_REASON"]

#: the close code of a connection whose token expired (the private 4000-4999 range)
TOKEN_EXPIRED_CODE = 4001
TOKEN_EXPIRED_REASON = "Token expired"

_info = RateLimitedLogger(logging.getLogger("snorky_sync.websocket"))
_ids = itertools.count()

#: each connection with a deadline -> the Expiries that holds it (for the in-band refresh)
_owners: weakref.WeakKeyDictionary[Client, Expiries] = weakref.WeakKeyDictionary()


def expiries_of(client: Client) -> Expiries | None:
    """The :class:`Expiries` holding ``client``'s deadline, None if it has none."""
    return _owners.get(client)


class Expiries:
    """The expiring connections of one endpoint.

    ``set(client, expires)`` (a wall-clock ``time.time()``, converted to the
    monotonic clock once) gives ``client`` a deadline or replaces its
    deadline (a refresh); ``discard(client)`` forgets it.  Past its deadline
    a connection still open is closed with 4001 ``Token expired``.  Entries
    refer to clients weakly: a closed connection nobody discarded costs a
    small tuple until its deadline, not its Client.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Client]]] = []
        self._deadlines: weakref.WeakKeyDictionary[Client, float] = weakref.WeakKeyDictionary()
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def __len__(self) -> int:
        return len(self._deadlines)

    def deadline(self, client: Client) -> float | None:
        """The monotonic deadline of ``client``, None if it has none."""
        return self._deadlines.get(client)

    def set(self, client: Client, expires: float) -> None:
        deadline = time.monotonic() + (expires - time.time())
        self._deadlines[client] = deadline
        _owners[client] = self
        heap = self._heap
        earliest = heap[0][0] if heap else None
        heapq.heappush(heap, (deadline, next(_ids), weakref.ref(client)))
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        elif earliest is None or deadline < earliest:
            self._wake.set()

    def discard(self, client: Client) -> None:
        self._deadlines.pop(client, None)
        if _owners.get(client) is self:
            del _owners[client]

    def _run(self) -> None:
        heap, deadlines, wake = self._heap, self._deadlines, self._wake
        try:
            while heap:
                deadline, _, ref = heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    wake.clear()
                    wake.wait(left)
                    continue
                heapq.heappop(heap)
                client = ref()
                if client is None or deadlines.get(client) != deadline:
                    continue  # gone, discarded, or refreshed (a later entry holds its deadline)
                del deadlines[client]
                _owners.pop(client, None)
                if client.closed or client.is_closing:
                    continue
                counters["tokens_expired"] += 1
                _info.info("token-expired", "closing %s (#%d): its token expired",
                           client.remote_address, client.id,
                           extra={"conn": client.id, "remote": client.remote_address})
                client.close(TOKEN_EXPIRED_CODE, TOKEN_EXPIRED_REASON)
        finally:
            self._greenlet = None
            if heap:  # set() ran as we were leaving
                self._greenlet = gevent.spawn(self._run)

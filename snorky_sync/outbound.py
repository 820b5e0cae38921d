"""What connections are owed: one app's budget of outbound bytes, and its keeper.

Every :class:`~snorky_sync.client.Client` belongs to one
:class:`OutboundBudget`: its app's (the :class:`~snorky_sync.runtime.Runtime`
of the app's Snorky extension, ``SNORKY_MAX_OUTBOUND_MEMORY``,
``SNORKY_WRITE_TIMEOUT``), or :data:`DEFAULT` for clients made without an app
(unit tests, your own endpoints).  A keeper greenlet per budget (only while it
has clients) sums what its clients are owed twice a second and, above the
budget, cuts the connections owed the most first until the total is back
under 90% of it (``memory_budget_disconnects``).
"""
from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING

import gevent

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["OutboundBudget", "DEFAULT", "default_memory_budget"]


def default_memory_budget(workers: int = 1) -> int:
    """A quarter of this machine's memory (or of the cgroup's limit, if lower),
    shared by ``workers`` processes; at least 64 MiB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 4 << 30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
        break
    return max(64 << 20, total // 4 // max(1, workers))


class OutboundBudget:
    """``limit`` bytes owed to all its clients together (0: none) and the
    ``write_timeout`` its clients' writes get by default (seconds without
    progress; 0: none).  ``owed`` and ``peak`` are what the keeper saw."""

    __slots__ = ("limit", "write_timeout", "interval", "clients", "owed", "peak", "_keeper",
                 "__weakref__")

    def __init__(self, limit: int | None = None, write_timeout: float = 5.0,
                 interval: float = 0.5) -> None:
        self.limit = default_memory_budget() if limit is None else int(limit)
        self.write_timeout = float(write_timeout)
        self.interval = interval
        self.clients: weakref.WeakSet[Client] = weakref.WeakSet()
        self.owed = 0  # bytes owed to the clients on the keeper's last pass
        self.peak = 0
        self._keeper: gevent.Greenlet | None = None

    def __repr__(self) -> str:
        return (f"<OutboundBudget limit={self.limit} write_timeout={self.write_timeout} "
                f"clients={len(self.clients)}>")

    def add(self, client: Client) -> None:
        self.clients.add(client)
        if self._keeper is None or self._keeper.dead:
            self._keeper = gevent.spawn(self._keep)

    def owed_now(self) -> int:
        """Bytes owed to the clients now (queued and being written)."""
        return sum(c.owed_bytes() for c in list(self.clients))

    def _keep(self) -> None:
        while self.clients:
            gevent.sleep(self.interval)
            self.check()

    def check(self) -> None:
        """One pass of the keeper."""
        limit = self.limit
        owing = []
        total = 0
        for c in list(self.clients):
            owed = c.owed_bytes()
            if owed:
                total += owed
                owing.append((owed, c.id, c))
        self.owed = total
        if total > self.peak:
            self.peak = total
        if not limit or total <= limit:
            return
        target = limit * 0.9
        owing.sort(reverse=True)
        for owed, _, c in owing:
            if total <= target:
                break
            total -= owed
            c._over_memory_budget(owed, limit)


#: the budget of clients made without an app's runtime
DEFAULT = OutboundBudget()

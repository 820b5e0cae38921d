"""The open connections of one app in this process, and of the whole process.

Each app's Snorky extension has a :class:`Connections` (its
:class:`~snorky_sync.runtime.Runtime`'s): every WebSocket and SockJS session
of its endpoints is tracked there from its start until its socket is closed.
Its connection limits (``SNORKY_MAX_CONNECTIONS``,
``SNORKY_MAX_CONNECTIONS_PER_IDENTITY``), ``/healthz`` and ``/metrics`` count
them.  Endpoints made without an app track into :data:`DEFAULT`.

Shutdown is the process's: :func:`close_all` closes the connections of every
app of the process (the gunicorn hook, the embedded server).
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from .. import wire
from ..metrics import counters

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Connections", "DEFAULT", "close_all", "live_clients"]

log = logging.getLogger("snorky_sync.websocket")

_every: weakref.WeakSet[Connections] = weakref.WeakSet()


class Connections:
    """The open connections of one app (WebSockets and SockJS sessions)."""

    __slots__ = ("live", "per_identity", "drained", "__weakref__")

    def __init__(self) -> None:
        self.live: set[Client] = set()
        self.per_identity: dict[Any, set[Client]] = {}  # identity key -> its open connections
        self.drained = gevent.event.Event()     # set whenever live is empty
        self.drained.set()
        _every.add(self)

    def __len__(self) -> int:
        return len(self.live)

    def __repr__(self) -> str:
        return f"<Connections open={len(self.live)}>"

    def of_identity(self, identity: Any) -> int:
        """How many are open for ``identity``."""
        return len(self.per_identity.get(wire.json_key(identity), ()))

    def clients_of(self, identity: Any) -> list[Client]:
        """The open connections of ``identity`` (a copy: closing them is safe)."""
        return list(self.per_identity.get(wire.json_key(identity), ()))

    def track(self, client: Client) -> Any:
        """Count an open connection: shutdown closes it, the connection limits
        see it (and ``connections_current``, /healthz) until :meth:`untrack`,
        which a WebSocket calls once its socket is closed.  Returns the
        identity key."""
        counters["connections_opened"] += 1
        counters["connections_current"] += 1
        self.live.add(client)
        self.drained.clear()
        identity = client.identity
        ident_key = None if identity is None else wire.json_key(identity)
        if ident_key is not None:
            own = self.per_identity.get(ident_key)
            if own is None:
                own = self.per_identity[ident_key] = set()
            own.add(client)
        return ident_key

    def untrack(self, client: Client, ident_key: Any) -> None:
        """The connection :meth:`track` counted is gone."""
        live = self.live
        if client not in live:
            return
        counters["connections_current"] -= 1
        live.discard(client)
        if not live:
            self.drained.set()
        if ident_key is not None:
            own = self.per_identity.get(ident_key)
            if own is not None:
                own.discard(client)
                if not own:
                    del self.per_identity[ident_key]


#: the connections of endpoints made without an app's runtime
DEFAULT = Connections()


def live_clients() -> list[Client]:
    """The open connections of this process, every app's."""
    return [c for connections in list(_every) for c in connections.live]


def close_all(code: int = 1001, reason: str = "Server shutting down",
              timeout: float = 5.0, batch: int = 500) -> int:
    """Close every WebSocket and SockJS session of this process, every app's
    (graceful shutdown).

    Each client gets a close frame (1001 "going away" by default) after what
    is already queued for it, in batches so the writers run in between; then
    this waits up to ``timeout`` seconds for the connections to end.
    Returns how many connections were still open when it gave up.
    """
    clients = live_clients()
    if clients:
        log.info("closing %d WebSocket connections (%d %s)", len(clients), code, reason)
    for i, client in enumerate(clients, 1):
        client.close(code, reason)
        if i % batch == 0:
            gevent.idle()
    deadline = time.monotonic() + timeout
    for connections in list(_every):
        connections.drained.wait(max(0.0, deadline - time.monotonic()))
    left = len(live_clients())
    if left:
        log.warning("%d WebSocket connections did not close within %ss", left, timeout)
    return left

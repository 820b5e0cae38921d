"""DataSyncBackend: the trusted side of DataSync (protocol.md §3).

Lives in the backend registry.  ``authorizeSubscription(items)`` returns a
token for the browser; ``publishDeltas(deltas)`` delivers changes.  The
state belongs to the frontend :class:`DataSyncService`, whose lock these
commands take (they run with ``lock=False`` on this service).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import checks
from ...timeout import GeventTimeoutFactory
from .. import idempotency as _idempotency
from ..base import RPCService, rpc_command
from .service import DataSyncService

if TYPE_CHECKING:  # pragma: no cover
    from ..base import Request

__all__ = ["DataSyncBackend"]


class DataSyncBackend(RPCService):
    """Backend DataSync for ``frontend``; unacquired subscriptions expire
    after ``timeout_interval`` seconds, timed by ``timeout_factory`` (default
    :data:`snorky_sync.timeout.GeventTimeoutFactory`; as in Snorky 0.1, any
    object whose ``call_later(delay, fn, *args)`` returns a handle with
    ``cancel()``).  ``idempotency_window``: seconds a ``publishDeltas``
    ``idempotencyKey`` is remembered (:mod:`snorky_sync.services.idempotency`; default 120)."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    def __init__(self, name: str, frontend: DataSyncService, timeout_interval: float = 120,
                 timeout_factory: Any = None, *,
                 idempotency_window: float = _idempotency.DEFAULT_WINDOW) -> None:
        super().__init__(name)
        if not isinstance(frontend, DataSyncService):
            raise TypeError("DataSyncBackend(name, frontend): frontend is the DataSyncService "
                            f"it authorizes for, got {type(frontend).__name__}")
        if timeout_factory is not None and not callable(getattr(timeout_factory, "call_later", None)):
            raise TypeError("DataSyncBackend(timeout_factory=...) wants an object with "
                            f"call_later(delay, fn, *args), got {type(timeout_factory).__name__}")
        self.frontend = frontend
        self.timeout_interval = checks.seconds("DataSyncBackend(timeout_interval=...)",
                                               timeout_interval, above=True)
        self.timeout_factory = timeout_factory or GeventTimeoutFactory
        #: ``publishDeltas`` calls by ``idempotencyKey`` (in Redis with a distributed broker)
        self.idempotency = _idempotency.Idempotency(
            self, _idempotency.window("DataSyncBackend", idempotency_window))

    @rpc_command(lock=False)
    def authorizeSubscription(self, req: Request, items: Any, requester: Any = None) -> str:
        """``items = [{"dealer": name, "query": q}, ...]`` -> token.  ``requester``
        (optional, a string): who the page belongs to, e.g. ``user:42`` or
        ``addr:203.0.113.7`` — pending subscriptions are capped per requester."""
        return self.frontend.do_authorize_subscription(items, self.timeout_interval,
                                                       self.timeout_factory, requester)

    @rpc_command(lock=False)
    def publishDeltas(self, req: Request, deltas: Any, idempotency_key: Any = None) -> None:
        """Validate every delta, then deliver them in order.  ``idempotencyKey``
        (a string): the same key within the window is delivered once (the
        PostgreSQL outbox relay names each batch so)."""
        self.idempotency.once(_idempotency.scope(None, backend=True), idempotency_key,
                              lambda: self.frontend.do_publish_deltas(deltas))

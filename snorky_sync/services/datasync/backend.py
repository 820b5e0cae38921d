"""DataSyncBackend: the trusted side of DataSync (PROTOCOL.md §3).

Lives in the backend registry.  ``authorizeSubscription(items)`` returns a
token for the browser; ``publishDeltas(deltas)`` delivers changes.  The
state belongs to the frontend :class:`DataSyncService`, whose lock these
commands take (they run with ``lock=False`` on this service).
"""
from __future__ import annotations

from ..base import RPCService, rpc_command
from .service import DataSyncService

__all__ = ["DataSyncBackend"]


class DataSyncBackend(RPCService):
    """Backend DataSync for ``frontend``; unacquired subscriptions expire
    after ``timeout_interval`` seconds, timed by ``timeout_factory`` (default
    :data:`snorky_sync.timeout.GeventTimeoutFactory`; as in Snorky 0.1, any
    object whose ``call_later(delay, fn, *args)`` returns a handle with
    ``cancel()``)."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    def __init__(self, name: str, frontend: DataSyncService, timeout_interval: float = 120,
                 timeout_factory=None) -> None:
        super().__init__(name)
        if not isinstance(frontend, DataSyncService):
            raise TypeError("DataSyncBackend(name, frontend): frontend is the DataSyncService "
                            f"it authorizes for, got {type(frontend).__name__}")
        if timeout_factory is not None and not callable(getattr(timeout_factory, "call_later", None)):
            raise TypeError("DataSyncBackend(timeout_factory=...) wants an object with "
                            f"call_later(delay, fn, *args), got {type(timeout_factory).__name__}")
        self.frontend = frontend
        self.timeout_interval = timeout_interval
        self.timeout_factory = timeout_factory

    @rpc_command(lock=False)
    def authorizeSubscription(self, req, items, requester=None):
        """``items = [{"dealer": name, "query": q}, ...]`` -> token.  ``requester``
        (optional, a string): who the page belongs to, e.g. ``user:42`` or
        ``addr:203.0.113.7`` — pending subscriptions are capped per requester."""
        return self.frontend.do_authorize_subscription(items, self.timeout_interval,
                                                       self.timeout_factory, requester)

    @rpc_command(lock=False)
    def publishDeltas(self, req, deltas):
        """Validate every delta, then deliver them in order."""
        self.frontend.do_publish_deltas(deltas)

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
    after ``timeout_interval`` seconds."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    def __init__(self, name: str, frontend: DataSyncService, timeout_interval: float = 120) -> None:
        super().__init__(name)
        self.frontend = frontend
        self.timeout_interval = timeout_interval

    @rpc_command(lock=False)
    def authorizeSubscription(self, req, items):
        """``items = [{"dealer": name, "query": q}, ...]`` -> token."""
        return self.frontend.do_authorize_subscription(items, self.timeout_interval)

    @rpc_command(lock=False)
    def publishDeltas(self, req, deltas):
        """Validate every delta, then deliver them in order."""
        self.frontend.do_publish_deltas(deltas)

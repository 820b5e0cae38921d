"""gunicorn server hooks for snorky_sync (used by the shipped gunicorn.conf.py).

With your own gunicorn config, add::

    from snorky_sync.gunicorn_hooks import worker_exit
"""
from __future__ import annotations

from .brokers import flush_all
from .endpoints.websocket import close_all

__all__ = ["worker_exit"]


def worker_exit(server, worker) -> None:
    """On a worker's way out (SIGTERM, restart): close every WebSocket with 1001.

    gunicorn's gevent worker has stopped accepting and finished its HTTP
    requests by now; without this the WebSockets would simply be cut.  Waits
    at most half the graceful timeout so the arbiter never has to kill us.
    """
    close_all(1001, "Server shutting down", timeout=max(1.0, worker.cfg.graceful_timeout / 2))
    flush_all()

"""gunicorn server hooks for snorky_sync (used by :mod:`snorky_sync.gunicorn_conf`).

With your own gunicorn config, start from the shipped one
(``from snorky_sync.gunicorn_conf import *``) or add::

    from snorky_sync.gunicorn_hooks import post_worker_init, worker_exit
"""
from __future__ import annotations

import logging

from . import hub_monitor
from .brokers import flush_all
from .endpoints.websocket import close_all
from .settings import Settings

__all__ = ["post_worker_init", "worker_exit"]


def _settings(worker) -> Settings:
    """The settings of the worker's app's Snorky extension, else the environment's."""
    ext = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("snorky_sync")
    return getattr(ext, "settings", None) or Settings.from_env()


def post_worker_init(worker) -> None:
    """In each worker, once its app is loaded: warn when the worker is not
    monkey-patched (``-k sync``, ``gthread``), and start gevent's monitor of
    the event loop (``SNORKY_MAX_BLOCKING_TIME``): a call that blocks every
    connection of the worker is logged with its stack and counted."""
    logger = getattr(getattr(worker, "log", None), "error_log", None) or logging.getLogger("snorky_sync")
    hub_monitor.warn_if_not_patched(logger)
    hub_monitor.start(_settings(worker).max_blocking_time)


def worker_exit(server, worker) -> None:
    """On a worker's way out (SIGTERM, restart): close every WebSocket with 1001.

    gunicorn's gevent worker has stopped accepting and finished its HTTP
    requests by now; without this the WebSockets would simply be cut.  Waits
    at most half the graceful timeout so the arbiter never has to kill us.
    """
    close_all(1001, "Server shutting down", timeout=max(1.0, worker.cfg.graceful_timeout / 2))
    flush_all()

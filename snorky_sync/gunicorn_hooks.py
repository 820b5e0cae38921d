"""gunicorn server hooks for snorky_sync (used by :mod:`snorky_sync.gunicorn_conf`).

With your own gunicorn config, start from the shipped one
(``from snorky_sync.gunicorn_conf import *``) or add::

    from snorky_sync.gunicorn_hooks import post_worker_init, worker_exit
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Protocol

import gevent

from . import hub_monitor
from .brokers import flush_all
from .endpoints.connections import close_all
from .settings import Settings

__all__ = ["post_worker_init", "worker_exit"]


class GunicornConfig(Protocol):
    """What these hooks read of gunicorn's ``Config`` (gunicorn has no types)."""

    @property
    def bind(self) -> list[str]: ...
    @property
    def worker_class_str(self) -> str: ...
    @property
    def graceful_timeout(self) -> float: ...


class GunicornWorker(Protocol):
    """What these hooks use of gunicorn's worker (``gunicorn.workers.base.Worker``);
    its ``wsgi`` (the app) and ``log`` are read with ``getattr``."""

    pid: int
    cfg: GunicornConfig

    def handle_exit(self, sig: int, frame: FrameType | None) -> None: ...


def _settings(worker: GunicornWorker) -> Settings:
    """The settings of the worker's app's Snorky extension, else the environment's."""
    ext = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("snorky_sync")
    return getattr(ext, "settings", None) or Settings.from_env()


def post_worker_init(worker: GunicornWorker) -> None:
    """In each worker, once its app is loaded: warn when the worker is not
    monkey-patched (``-k sync``, ``gthread``), and start gevent's monitor of
    the event loop (``SNORKY_MAX_BLOCKING_TIME``): a call that blocks every
    connection of the worker is logged with its stack and counted.  In a
    gevent worker, SIGTERM closes the worker's WebSockets at once
    (:func:`_close_on_sigterm`)."""
    logger = getattr(getattr(worker, "log", None), "error_log", None) or logging.getLogger("snorky_sync")
    check_server_settings(worker)
    if hub_monitor.warn_if_not_patched(logger):
        _close_on_sigterm(worker)
    hub_monitor.start(_settings(worker).max_blocking_time)


def _gunicorn_value(cfg: GunicornConfig, name: str) -> object:
    """What gunicorn runs with for the setting ``name`` (None: it has no such)."""
    if name in ("host", "port"):
        first = str(cfg.bind[0]) if cfg.bind else ""
        host, _, port = first.rpartition(":")
        return host.strip("[]") if name == "host" else (int(port) if port.isdigit() else None)
    if name in ("backend_host", "backend_port"):
        second = str(cfg.bind[1]) if len(cfg.bind) > 1 else ""
        host, _, port = second.rpartition(":")
        if name == "backend_host":
            return host.strip("[]") or None
        return int(port) if port.isdigit() else 0
    if name == "worker_class":
        return cfg.worker_class_str
    return getattr(cfg, name, None)


_WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR

#: settings gunicorn reads from the environment before it loads the app
SERVER_SETTINGS = ("host", "port", "backend_host", "backend_port", "workers", "worker_class",
                   "worker_connections", "backlog")


def check_server_settings(worker: GunicornWorker) -> None:
    """A server setting given in the app's ``app.config`` that gunicorn is not
    running with (it bound, forked and chose its worker class before it loaded
    the app) is logged and stops gunicorn ("worker failed to boot"):
    configured but not in effect."""
    settings = _settings(worker)
    wrong = []
    for name in SERVER_SETTINGS:
        if name not in settings._from_app:
            continue
        wanted, running = getattr(settings, name), _gunicorn_value(worker.cfg, name)
        if running is not None and str(wanted) != str(running) and not (
                name == "worker_class" and str(running).endswith(f".{wanted}")):
            wrong.append(f"SNORKY_{name.upper()}={wanted!r} (gunicorn runs with {running!r})")
    if wrong:
        log = getattr(getattr(worker, "log", None), "error_log", None) or logging.getLogger("snorky_sync")
        log.error("app.config sets %s: gunicorn reads these from the environment or its command "
                  "line before it loads the app, so they are not in effect; set them there and "
                  "remove them from app.config", ", ".join(wrong))
        # gunicorn's "worker failed to boot": the arbiter stops instead of respawning it
        raise SystemExit(_WORKER_BOOT_ERROR)


def _close_timeout(worker: GunicornWorker) -> float:
    """Half the graceful timeout, so the arbiter never has to kill the worker."""
    return max(1.0, worker.cfg.graceful_timeout / 2)


def _close_on_sigterm(worker: GunicornWorker) -> None:
    """SIGTERM closes the worker's WebSockets with 1001 at once, then lets
    gunicorn stop the worker as usual.

    gunicorn's own handler only marks the worker as stopping; its gevent
    worker then waits for its HTTP connections before :func:`worker_exit`
    runs, an idle keep-alive one (a browser keeps its page's) until the
    keep-alive ends: the pages stayed that long on a stopping worker, and were
    cut (1006, nothing flushed) when the graceful timeout was shorter.
    """
    handle_exit = worker.handle_exit

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        handle_exit(sig, frame)
        # out of the signal handler, as gunicorn's gevent worker does with SIGQUIT
        gevent.spawn(close_all, 1001, "Server shutting down", _close_timeout(worker))

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn had it: no EINTR in active requests


def worker_exit(server: object, worker: GunicornWorker) -> None:
    """On a worker's way out (SIGTERM, HUP, ``max_requests``): close every
    WebSocket still open with 1001, and flush the brokers.

    gunicorn's gevent worker has stopped accepting and finished its HTTP
    requests by now; without this the WebSockets would simply be cut (after a
    SIGTERM, :func:`_close_on_sigterm` has closed them already).  Waits at most
    half the graceful timeout so the arbiter never has to kill us.
    """
    close_all(1001, "Server shutting down", timeout=_close_timeout(worker))
    flush_all()

"""The embedded server: a single-process gevent WSGI server for any Flask app.

``serve(app, host, port)`` runs the app with gevent's pywsgi and a handler
that hands the raw socket to the WebSocket endpoint (``environ['snorky.socket']``)
and writes nothing once the endpoint has taken the connection over.  Every
connection has deadlines and a header size limit
(:mod:`snorky_sync.endpoints.http_limits`), from the app's settings.

If your own views do blocking I/O (database drivers, HTTP clients), call
``gevent.monkey.patch_all()`` at the very top of your program so they yield
to other connections.
"""
from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
from gevent import pywsgi

from . import hub_monitor
from .brokers import flush_all
from .endpoints.connections import close_all
from .endpoints.http_limits import HTTPLimits, LimitedHandler
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

__all__ = ["SnorkyWSGIHandler", "serve", "make_server"]

log = logging.getLogger("snorky_sync.server")


class SnorkyWSGIHandler(LimitedHandler):
    """pywsgi handler that lets the WebSocket endpoint own the socket (with
    :class:`~snorky_sync.endpoints.http_limits.LimitedHandler`'s deadlines)."""

    def handle(self) -> None:
        # pywsgi writes a response's headers and body with separate sends:
        # with Nagle on, the body waited for the client's delayed ACK of the
        # headers (~40 ms per backend call, measured; gunicorn sets it too)
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        super().handle()

    def get_environ(self) -> WSGIEnvironment:
        environ: WSGIEnvironment = super().get_environ()
        environ["snorky.socket"] = self.socket
        return environ

    def run_application(self) -> None:
        super().run_application()
        if self.environ.get("snorky.hijacked"):
            self.close_connection = True

    def log_request(self) -> None:
        # environ is None when the request was refused before it was read whole (400, 408, 431)
        if (self.environ is not None and self.environ.get("snorky.hijacked")) or not self.server.log:
            return
        super().log_request()


def _settings(app: WSGIApplication) -> Settings:
    """The settings of ``app``'s Snorky extension, else from the environment."""
    ext = getattr(app, "extensions", {}).get("snorky_sync")
    return getattr(ext, "settings", None) or Settings.from_env()


def make_server(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8002,
                access_log: bool = False, **kwargs: Any) -> pywsgi.WSGIServer:
    """A ready (not yet started) gevent server for ``app``.

    Its HTTP deadlines and header size limit are those of ``app``'s Snorky
    extension's settings (``SNORKY_HEADER_TIMEOUT``, ...), else the environment's.
    """
    settings = _settings(app)
    kwargs.setdefault("backlog", settings.backlog)  # gevent's default is 128
    server = pywsgi.WSGIServer(
        (host, port), app, handler_class=SnorkyWSGIHandler,
        log=(None if not access_log else "default"), error_log="default", **kwargs)
    server.snorky_http_limits = HTTPLimits.from_settings(settings)  # read by the handler
    return server


def _start(server: pywsgi.WSGIServer, host: str, port: int) -> None:
    try:
        server.start()
    except OSError as exc:
        if exc.filename is None:  # say which address: "Address already in use: '127.0.0.1:8002'"
            exc.filename = f"{host}:{port}"
        raise


def serve(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8002, access_log: bool = False,
          shutdown_timeout: float | None = None, also: Sequence[tuple[str, int]] = ()) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, in this process, with gevent.

    On SIGTERM/SIGINT it stops accepting, sends every WebSocket a 1001 close
    frame (clients such as snorky.js reconnect to the next process) and waits
    up to ``shutdown_timeout`` seconds (default ``SNORKY_SHUTDOWN_TIMEOUT``)
    for them to go.  ``also``: more ``(host, port)`` addresses serving the
    same app (e.g. a private port for the backend).

    Like ``app.run``, this is a program's entry point: if logging is not
    configured yet, it logs INFO and above to stderr.  It warns when the
    process is not monkey-patched, and starts gevent's monitor of the event
    loop (``SNORKY_MAX_BLOCKING_TIME``, :mod:`snorky_sync.hub_monitor`).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(app)
    if shutdown_timeout is None:
        shutdown_timeout = settings.shutdown_timeout
    server = make_server(app, host, port, access_log=access_log)
    _start(server, host, port)
    hub_monitor.warn_if_not_patched()
    hub_monitor.start(settings.max_blocking_time)  # a call that blocks every connection is logged
    log.info("snorky_sync listening on http://%s:%d", host, server.server_port)
    extra = [make_server(app, h, p, access_log=access_log) for h, p in also]
    for s, (h, p) in zip(extra, also):
        _start(s, h, p)
        log.info("snorky_sync also listening on http://%s:%d", s.server_host, s.server_port)
    stopping = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    stopping.wait()
    log.info("shutting down: no new connections; closing WebSockets with 1001")
    for s in [server, *extra]:
        s.close()
    close_all(1001, "Server shutting down", timeout=shutdown_timeout)
    flush_all()
    for s in [server, *extra]:
        s.stop(timeout=1)

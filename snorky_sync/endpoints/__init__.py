"""The I/O edge: Flask views that turn sockets and HTTP requests into registry calls."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import socket

    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["local_port", "request_socket"]


def request_socket(environ: WSGIEnvironment) -> socket.socket | None:
    """The gevent socket under this request, if the server lets us see it."""
    for key in ("snorky.socket", "gunicorn.socket", "gunicorn.sock"):
        sock: socket.socket | None = environ.get(key)
        if sock is not None:
            return sock
    try:  # pywsgi handlers that do not expose it (gevent-websocket's)
        under: socket.socket = environ["wsgi.input"].rfile.raw._sock
        return under
    except (KeyError, AttributeError):
        return None


def local_port(environ: WSGIEnvironment) -> int | None:
    """The port this request really arrived on (from the socket, not the Host header)."""
    for key in ("snorky.socket", "gunicorn.socket", "gunicorn.sock"):
        sock = environ.get(key)
        if sock is not None:
            try:
                port: int = sock.getsockname()[1]
                return port
            except (OSError, IndexError, TypeError):
                return None
    return None

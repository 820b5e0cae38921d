"""The I/O edge: Flask views that turn sockets and HTTP requests into registry calls."""
from __future__ import annotations

__all__ = ["local_port", "request_socket"]


def request_socket(environ):
    """The gevent socket under this request, if the server lets us see it."""
    for key in ("snorky.socket", "gunicorn.socket", "gunicorn.sock"):
        sock = environ.get(key)
        if sock is not None:
            return sock
    try:  # pywsgi handlers that do not expose it (gevent-websocket's)
        return environ["wsgi.input"].rfile.raw._sock
    except (KeyError, AttributeError):
        return None


def local_port(environ) -> int | None:
    """The port this request really arrived on (from the socket, not the Host header)."""
    for key in ("snorky.socket", "gunicorn.socket", "gunicorn.sock"):
        sock = environ.get(key)
        if sock is not None:
            try:
                return sock.getsockname()[1]
            except (OSError, IndexError, TypeError):
                return None
    return None

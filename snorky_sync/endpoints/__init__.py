"""The I/O edge: Flask views that turn sockets and HTTP requests into registry calls."""
from __future__ import annotations

__all__ = ["local_port"]


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

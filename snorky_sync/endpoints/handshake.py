"""The RFC 6455 server handshake, from a WSGI environ to response bytes (no I/O).

Hand-written because it is on the handshake hot path: building websockets'
``ServerProtocol``, ``Request`` and ``Headers`` objects for it cost about
10% of a handshake (profiled with py-spy).  No extension is negotiated
(permessage-deflate stays off: it halves throughput and costs ~90 KB per
connection), no subprotocol is selected.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["accept_handshake", "HandshakeError", "guard_geventwebsocket"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    """A request that is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",")]


def accept_handshake(environ: WSGIEnvironment) -> bytes:
    """The ``101 Switching Protocols`` response for a valid opening
    handshake in ``environ``; raises :class:`HandshakeError` otherwise."""
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeError(405, "A WebSocket handshake is a GET request", [("Allow", "GET")])
    if environ.get("SERVER_PROTOCOL", "HTTP/1.1") in ("HTTP/1.0", "HTTP/0.9"):
        raise HandshakeError(400, "A WebSocket handshake needs HTTP/1.1")  # RFC 6455 4.1
    if "websocket" not in _tokens(environ.get("HTTP_UPGRADE", "")) or \
            "upgrade" not in _tokens(environ.get("HTTP_CONNECTION", "")):
        raise HandshakeError(426, "This endpoint speaks WebSocket: send Upgrade: websocket",
                             [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != "13":
        raise HandshakeError(426, "Unsupported Sec-WebSocket-Version (13 is)",
                             [("Sec-WebSocket-Version", "13")])
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Missing or invalid Sec-WebSocket-Key")
    accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def guard_geventwebsocket(handler_class: type) -> None:
    """Make gevent-websocket's ``WebSocketHandler`` (``handler_class``) upgrade
    only valid opening handshakes, and leave every other upgrade request to
    the app, whose view answers it as under every other server.

    Its own answers to a bad handshake (an old or missing
    ``Sec-WebSocket-Version``, as hixie-76 sends; a bad key; HTTP/1.0) write
    a ``str`` body: each one was a ``TypeError`` traceback in the log, and a
    warning quoting the client's header, for any anonymous client.  Applied
    once (idempotent)."""
    upgrade = handler_class.upgrade_websocket  # type: ignore[attr-defined]
    if getattr(upgrade, "snorky_guarded", False):
        return

    def upgrade_websocket(self: Any) -> Any:
        environ = self.environ
        if "websocket" in _tokens(environ.get("HTTP_UPGRADE", "")):
            probe = environ
            if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() in ("7", "8"):
                # hybi-07/08 frame as RFC 6455 does: gevent-websocket upgrades them (SockJS serves them)
                probe = {**environ, "HTTP_SEC_WEBSOCKET_VERSION": "13"}
            try:
                accept_handshake(probe)
            except HandshakeError:
                return None  # not upgraded, no status: the app runs (its view answers)
        return upgrade(self)

    upgrade_websocket.snorky_guarded = True  # type: ignore[attr-defined]
    handler_class.upgrade_websocket = upgrade_websocket  # type: ignore[attr-defined]

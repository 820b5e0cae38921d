"""The backend HTTP endpoint: trusted servers POST envelopes (protocol.md §4).

Order of checks: method (405), ``X-Backend-Key`` (401, constant-time compare,
checked before the body is even read), body size (413), UTF-8 JSON (400),
envelope shape (400), service name (404).  Otherwise 200 with the service's
reply envelope, RPC errors included.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent.event
from flask import Response, request

from .. import wire
from ..client import Client
from ..logs import RateLimitedLogger
from ..metrics import counters
from ..services.base import RPCService
from . import local_port

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import ServiceRegistry

__all__ = ["BackendClient", "make_backend_view"]

log = logging.getLogger("snorky_sync.backend_http")
_warn = RateLimitedLogger(log)  # anyone who reaches the endpoint can cause these

_TERMINAL = ("response", "error")


class BackendClient(Client):
    """The client a backend request acts as: it collects its RPC answer."""

    __slots__ = ("answer", "_done", "_rpc")

    def __init__(self, remote_address: str, rpc: bool = True) -> None:
        super().__init__(None, remote_address, identity=None)
        self.answer: bytes | None = None
        self._done = gevent.event.Event()
        self._rpc = rpc

    def send_frame(self, frame: bytes) -> None:
        if self.answer is not None:
            return
        payload = wire.frame_payload(frame)
        message = wire.decode(payload).get("message")
        if not self._rpc or (type(message) is dict and message.get("type") in _TERMINAL):
            self.answer = payload
            self._done.set()

    def wait(self, timeout: float) -> bytes | None:
        self._done.wait(timeout)
        return self.answer


def answer_envelope(registry: ServiceRegistry, envelope: dict[Any, Any], remote: str, rpc: bool = True,
                    timeout: float = 30.0) -> bytes | None:
    """Run one backend envelope through ``registry`` as a short-lived client;
    the reply envelope's bytes, or None if the service did not answer in time."""
    client = BackendClient(remote, rpc)
    registry.client_connected(client)
    try:
        registry.process_message_from(client, envelope)
        return client.wait(timeout)
    finally:
        registry.client_disconnected(client)


def _json(status: int, body: Any) -> Response:
    return Response(wire.encode(body), status=status, mimetype="application/json")


def make_backend_view(registry: ServiceRegistry, api_key: str, max_body_size: int = 10 * 1024 * 1024,
                      reply_timeout: float = 30.0, only_port: int | None = None) -> Callable[[], Response]:
    """The Flask view serving ``registry`` to trusted HTTP callers.

    ``only_port``: answer 404 unless the request arrived on that local port
    (serve the app on a public and a private port, the backend only on the latter).
    """
    expected = api_key.encode("utf-8")

    def snorky_backend() -> Response:
        if only_port is not None and local_port(request.environ) != only_port:
            return _json(404, {"error": "Not found"})
        if request.method != "POST":
            return _json(405, {"error": "Only POST is allowed"})
        given = request.headers.get("X-Backend-Key")
        if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            counters["backend_unauthorized"] += 1
            _warn.warning("backend-key", "backend request from %s with %s key", request.remote_addr,
                        "no" if given is None else "a wrong")
            return _json(401, {"error": "Invalid or missing X-Backend-Key"})
        length = request.content_length
        if length is not None and length > max_body_size:
            return _json(413, {"error": f"Body larger than {max_body_size} bytes"})
        body = request.stream.read(max_body_size + 1)
        if len(body) > max_body_size:
            return _json(413, {"error": f"Body larger than {max_body_size} bytes"})
        try:
            envelope = wire.gc_paused(wire.decode, body)
        except wire.DecodeError:
            return _json(400, {"error": "Body is not UTF-8 JSON"})
        if type(envelope) is not dict or "service" not in envelope or "message" not in envelope:
            return _json(400, {"error": "Body must be an object with 'service' and 'message'"})
        name = envelope["service"]
        if type(name) is not str or name not in registry:
            return _json(404, {"error": f"Unknown service: {name!r}"[:200]})
        message = envelope["message"]
        rpc = isinstance(registry.get_service(name), RPCService)
        if rpc and (type(message) is not dict or "command" not in message
                    or "params" not in message):
            return _json(400, {"error": "An RPC message needs 'command' and 'params'"})
        counters["backend_requests"] += 1
        answer = answer_envelope(registry, envelope, f"{request.remote_addr} (backend)", rpc,
                                 reply_timeout)
        if answer is None:
            return _json(504, {"error": "The service did not answer in time"})
        return Response(answer, status=200, mimetype="application/json")

    return snorky_backend

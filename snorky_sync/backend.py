"""The backend connector for web applications: call snorky_sync's backend from Python.

::

    from snorky_sync.backend import HTTPTransport, SnorkyBackend

    snorky = SnorkyBackend(HTTPTransport("http://127.0.0.1:8002/backend", api_key=KEY))
    snorky.publish("news", {"title": "Hello"})                  # pubsub_backend.publish
    token = snorky.authorize_subscription([{"dealer": "todos", "query": None}])
    snorky.publish_deltas([{"type": "insert", "model": "Todo", "data": {...}}])
    snorky.call("calc", "add", a=1, b=2)                       # any backend service

``call`` returns the response's ``data`` or raises :class:`SnorkyError` with
the service's error text; transport problems (server unreachable, timeout,
401, a body that is not the expected JSON) raise :class:`SnorkyTransportError`.
"""
from __future__ import annotations

import itertools
from typing import Any

import orjson
import urllib3

__all__ = ["SnorkyBackend", "HTTPTransport", "LocalTransport", "SnorkyError", "SnorkyTransportError"]


class SnorkyError(Exception):
    """The service answered with an RPC error; ``message`` is its text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SnorkyTransportError(Exception):
    """The request did not get a service answer (network, HTTP status, body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HTTPTransport:
    """POSTs envelopes to the backend endpoint over pooled keep-alive connections."""

    def __init__(self, url: str, api_key: str, timeout: float = 10.0, retries: int = 0,
                 maxsize: int = 10) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json", "X-Backend-Key": api_key}
        self.pool = urllib3.PoolManager(
            maxsize=maxsize, timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(total=retries, redirect=0, raise_on_status=False))

    def send(self, envelope: dict) -> dict:
        """POST one envelope; return the reply envelope."""
        try:
            resp = self.pool.request("POST", self.url, body=orjson.dumps(envelope),
                                     headers=self.headers)
        except urllib3.exceptions.HTTPError as exc:
            raise SnorkyTransportError(f"cannot reach {self.url}: {exc}") from exc
        if resp.status != 200:
            detail = resp.data[:200].decode("utf-8", "replace")
            raise SnorkyTransportError(f"{self.url} answered HTTP {resp.status}: {detail}", resp.status)
        try:
            reply = orjson.loads(resp.data)
        except orjson.JSONDecodeError as exc:
            raise SnorkyTransportError(f"{self.url} answered a body that is not JSON") from exc
        if type(reply) is not dict or type(reply.get("message")) is not dict:
            raise SnorkyTransportError(f"{self.url} answered an unexpected body: {reply!r:.200}")
        return reply

    def close(self) -> None:
        self.pool.clear()


class LocalTransport:
    """Calls a backend registry of this very process, without HTTP.

    For a web application served by the same process as snorky_sync (the
    demos, a small deployment): ``SnorkyBackend(LocalTransport(registry))``.
    With a distributed broker the calls still reach every process.
    """

    def __init__(self, registry, timeout: float = 30.0) -> None:
        self.registry = registry
        self.timeout = timeout

    def send(self, envelope: dict) -> dict:
        from .endpoints.backend_http import answer_envelope

        name = envelope.get("service")
        if name not in self.registry:
            raise SnorkyTransportError(f"Unknown service: {name!r}", 404)
        answer = answer_envelope(self.registry, envelope, "local (backend)", timeout=self.timeout)
        if answer is None:
            raise SnorkyTransportError(f"{name} did not answer in {self.timeout}s", 504)
        return orjson.loads(answer)

    def close(self) -> None:
        pass


class SnorkyBackend:
    """Calls backend services; ``token_secret`` enables connection tokens."""

    def __init__(self, transport: "HTTPTransport | LocalTransport", token_secret: str | None = None) -> None:
        self.transport = transport
        self._ids = itertools.count(1)
        self._tokens = None
        if token_secret:
            from .auth import ConnectionTokens
            self._tokens = ConnectionTokens(token_secret)

    def call(self, service: str, command: str, **params: Any) -> Any:
        """Run ``command`` of backend ``service``; params use wire (camelCase) names."""
        call_id = next(self._ids)
        reply = self.transport.send({"service": service, "message": {
            "command": command, "params": params, "callId": call_id}})
        msg = reply["message"]
        if msg.get("type") == "error":
            raise SnorkyError(msg.get("message", ""))
        if msg.get("type") != "response":
            raise SnorkyTransportError(f"unexpected reply: {msg!r:.200}")
        return msg.get("data")

    # -- the common calls ---------------------------------------------------
    def publish(self, channel: Any, message: Any, service: str = "pubsub_backend") -> None:
        """Publish to a PubSub channel (no ``can_publish`` check on the backend)."""
        self.call(service, "publish", channel=channel, message=message)

    def authorize_subscription(self, items: list[dict], service: str = "datasync_backend") -> str:
        """A DataSync subscription token for ``[{"dealer": ..., "query": ...}, ...]``."""
        return self.call(service, "authorizeSubscription", items=items)

    def publish_deltas(self, deltas: list[dict], service: str = "datasync_backend") -> None:
        """Deliver DataSync deltas (insert/update/delete) to subscribers."""
        self.call(service, "publishDeltas", deltas=deltas)

    def create_connection_token(self, identity: Any) -> str:
        """A signed, expiring token the browser passes as ``?token=`` (needs ``token_secret``)."""
        if self._tokens is None:
            raise RuntimeError("SnorkyBackend(..., token_secret=...) is needed for connection tokens")
        return self._tokens.create(identity)

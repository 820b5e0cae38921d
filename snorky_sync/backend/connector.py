"""SnorkyBackend: RPC calls to backend services through a transport."""
from __future__ import annotations

import itertools
import logging
from typing import Any

__all__ = ["SnorkyBackend", "SnorkyError", "SnorkyTransportError"]

log = logging.getLogger("snorky_sync.backend")


class SnorkyError(Exception):
    """The service answered with an RPC error; ``message`` is its text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SnorkyTransportError(RuntimeError):
    """The request did not get a service answer (network, HTTP status, body).

    A RuntimeError, as Snorky 0.1's connector raised for these."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SnorkyBackend:
    """Sends messages and RPC calls to backend services.

    ``SnorkyBackend(transport, json=None, token_secret=None)``: ``transport``
    is an :class:`~.transports.HTTPTransport`, a
    :class:`~.transports.LocalTransport` or any object with
    ``send(message, json=...)``; ``json`` (Snorky 0.1) the module messages
    are encoded with (e.g. one that knows your types; default orjson);
    ``token_secret`` enables :meth:`create_connection_token`.
    """

    def __init__(self, transport, json=None, token_secret: str | None = None) -> None:
        if not callable(getattr(transport, "send", None)):
            raise TypeError("SnorkyBackend(transport): transport has a send(message, json) method "
                            f"(HTTPTransport, LocalTransport), got {type(transport).__name__}")
        if json is not None and not (callable(getattr(json, "dumps", None))
                                     and callable(getattr(json, "loads", None))):
            raise TypeError("SnorkyBackend(transport, json=...): json is a module with dumps() and "
                            f"loads(), got {type(json).__name__} (token_secret= is a keyword)")
        self.transport = transport
        self.json = json
        self._ids = itertools.count(1)
        self._tokens = None
        if token_secret:
            from ..auth import ConnectionTokens
            self._tokens = ConnectionTokens(token_secret)

    def send(self, message: dict) -> dict:
        """Send a bare envelope; returns the reply envelope (Snorky 0.1)."""
        return self.transport.send(message, json=self.json)

    def call(self, service: str, command: str, **params: Any) -> Any:
        """Run ``command`` of backend ``service``; params use wire (camelCase) names."""
        log.debug("call %s.%s %s", service, command, params)
        reply = self.send({"service": service, "message": {
            "command": command, "params": params, "callId": next(self._ids)}})
        msg = reply["message"]
        kind = msg.get("type")
        if kind == "error":
            raise SnorkyError(msg.get("message", ""))
        if kind != "response":
            raise SnorkyTransportError(f"unexpected reply: {msg!r:.200}")
        return msg.get("data")

    # -- the common calls ---------------------------------------------------
    def publish(self, channel: Any, message: Any, service: str = "pubsub_backend") -> None:
        """Publish to a PubSub channel (no ``can_publish`` check on the backend)."""
        self.call(service, "publish", channel=channel, message=message)

    def authorize_subscription(self, items: list[dict], service: str = "datasync_backend",
                               requester: str | None = None) -> str:
        """A DataSync subscription token for ``[{"dealer": ..., "query": ...}, ...]``.

        ``requester`` names who the page belongs to (``"user:42"``,
        ``"addr:203.0.113.7"``): the server keeps at most
        ``SNORKY_MAX_PENDING_PER_REQUESTER`` unacquired subscriptions per
        requester, so one visitor loading pages in a loop cannot use up
        everybody's (Snorky 0.1 had no such parameter: without it, only the
        process-wide cap applies)."""
        if requester is None:
            return self.call(service, "authorizeSubscription", items=items)
        return self.call(service, "authorizeSubscription", items=items, requester=requester)

    def publish_deltas(self, deltas: list[dict], service: str = "datasync_backend") -> None:
        """Deliver DataSync deltas (insert/update/delete) to subscribers."""
        self.call(service, "publishDeltas", deltas=deltas)

    def create_connection_token(self, identity: Any) -> str:
        """A signed, expiring token the browser passes as ``?token=`` (needs ``token_secret``)."""
        if self._tokens is None:
            raise RuntimeError("SnorkyBackend(..., token_secret=...) is needed for connection tokens")
        return self._tokens.create(identity)

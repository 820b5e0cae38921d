"""SnorkyBackend: RPC calls to backend services through a transport."""
from __future__ import annotations

import functools
import inspect
import itertools
import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..auth import ConnectionTokens

__all__ = ["SnorkyBackend", "SnorkyError", "SnorkyTransportError", "Transport", "JSONCodec"]

log = logging.getLogger("snorky_sync.backend")


def takes_keyword(func: Any, name: str) -> bool:
    """Whether ``func`` can be called with the keyword argument ``name`` (a
    parameter of that name, or ``**kwargs``): a hook or override written for
    an older signature (Snorky 0.1's ``authorize_subscription(items)``) is
    then called without it.  Inspected once per function (cached)."""
    func = getattr(func, "__func__", func)  # a bound method: its function
    try:
        return _takes_keyword(func, name)
    except TypeError:  # an unhashable callable: not cached
        return _takes_keyword.__wrapped__(func, name)


@functools.lru_cache(maxsize=64)
def _takes_keyword(func: Any, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # not inspectable (some builtins): called as documented
        return True
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
               for p in params)


class JSONCodec(Protocol):
    """What ``json=`` is (Snorky 0.1): a module (or object) with ``dumps`` and ``loads``."""

    def dumps(self, obj: Any, /) -> str: ...

    def loads(self, s: str, /) -> Any: ...


class Transport(Protocol):
    """What :class:`SnorkyBackend` sends through (Snorky 0.1's interface):
    :class:`~.transports.HTTPTransport`, :class:`~.transports.LocalTransport`, yours."""

    def send(self, message: dict[str, Any], json: JSONCodec | None = None) -> dict[str, Any]: ...


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

    def __init__(self, transport: Transport, json: JSONCodec | None = None,
                 token_secret: str | None = None) -> None:
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
        self._tokens: ConnectionTokens | None = None
        if token_secret:
            from ..auth import ConnectionTokens
            self._tokens = ConnectionTokens(token_secret)

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a bare envelope; returns the reply envelope (Snorky 0.1)."""
        return self.transport.send(message, json=self.json)

    def call(self, service: str, command: str, **params: Any) -> Any:
        """Run ``command`` of backend ``service``; params use wire (camelCase) names."""
        return self._call(service, command, params)

    def _call(self, service: str, command: str, params: dict[str, Any]) -> Any:
        """:meth:`call` with the params as a dict (a param may be named ``service``)."""
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
    def publish(self, channel: Any, message: Any, service: str = "pubsub_backend",
                idempotency_key: str | None = None) -> None:
        """Publish to a PubSub channel (no ``can_publish`` check on the backend).

        ``idempotency_key`` (a string of up to 256 bytes, e.g. a UUID made once
        per message): a retry with the same key on the same channel within
        the service's window (default 120 s) is answered as the first call
        was and delivers nothing, on every worker; retry with it after a
        timeout or a transport error."""
        params: dict[str, Any] = {"channel": channel, "message": message}
        if idempotency_key is not None:
            params["idempotencyKey"] = idempotency_key
        self.call(service, "publish", **params)

    def disconnect(self, identity: Any, reconnect: bool = True, reason: str = "",
                   service: str = "control") -> int:
        """Close every connection of ``identity`` on every worker (the backend
        ``control`` service): close code 4002, or 4003 with ``reconnect=False``
        (snorky.js then stays disconnected), ``reason`` as the close reason.
        Returns how many the answering process closed."""
        params: dict[str, Any] = {"identity": identity, "reconnect": reconnect}
        if reason:
            params["reason"] = reason
        return int(self.call(service, "disconnect", **params)["closed"])

    def info(self, service: str = "control") -> list[dict[str, Any]]:
        """One dict per process serving the app (pid, host, connections, identities)."""
        return list(self.call(service, "info")["processes"])

    def subscribe(self, identity: Any, channel: Any, service: str = "pubsub",
                  control: str = "control") -> dict[str, int]:
        """Subscribe every connection of ``identity``, on every worker, to
        ``channel`` of the frontend PubSub ``service``, through the same read
        authorization as a page's subscribe; each page is told
        (``{"type": "subscribed", "channel": ...}``, snorky.js
        ``serverSubscribed``).  Returns ``{"subscribed", "refused",
        "processes"}``: connections subscribed now and refused, summed over
        the processes that answered."""
        return dict(self._call(control, "subscribe",
                               {"identity": identity, "service": service, "channel": channel}))

    def unsubscribe(self, identity: Any, channel: Any, service: str = "pubsub",
                    control: str = "control") -> dict[str, int]:
        """Take every connection of ``identity``, on every worker, out of
        ``channel`` (each page is told).  Returns ``{"unsubscribed",
        "processes"}``."""
        return dict(self._call(control, "unsubscribe",
                               {"identity": identity, "service": service, "channel": channel}))

    def channels(self, service: str = "pubsub", control: str = "control") -> list[dict[str, Any]]:
        """The channels of ``service`` with subscribers on any worker:
        ``[{"channel": ..., "subscribers": n}, ...]``."""
        return list(self._call(control, "channels", {"service": service})["channels"])

    def authorize_subscription(self, items: list[dict[str, Any]], service: str = "datasync_backend",
                               requester: str | None = None) -> str:
        """A DataSync subscription token for ``[{"dealer": ..., "query": ...}, ...]``.

        ``requester`` names who the page belongs to (``"user:42"``,
        ``"addr:203.0.113.7"``): the server keeps at most
        ``SNORKY_MAX_PENDING_PER_REQUESTER`` unacquired subscriptions per
        requester, so one visitor loading pages in a loop cannot use up
        everybody's (Snorky 0.1 had no such parameter: without it, only the
        process-wide cap applies)."""
        params: dict[str, Any] = {"items": items}
        if requester is not None:
            params["requester"] = requester
        token: str = self.call(service, "authorizeSubscription", **params)
        return token

    def publish_deltas(self, deltas: list[dict[str, Any]], service: str = "datasync_backend",
                       idempotency_key: str | None = None) -> None:
        """Deliver DataSync deltas (insert/update/delete) to subscribers;
        ``idempotency_key``: as :meth:`publish`'s (the batch is delivered once)."""
        params: dict[str, Any] = {"deltas": deltas}
        if idempotency_key is not None:
            params["idempotencyKey"] = idempotency_key
        self.call(service, "publishDeltas", **params)

    def create_connection_token(self, identity: Any) -> str:
        """A signed, expiring token the browser passes as ``?token=`` (needs ``token_secret``)."""
        if self._tokens is None:
            raise RuntimeError("SnorkyBackend(..., token_secret=...) is needed for connection tokens")
        return self._tokens.create(identity)

    def presence(self, channel: Any, service: str = "pubsub", control: str = "control") -> list[dict[str, Any]]:
        """The presence of ``channel`` in the frontend ``service`` (a PubSub or
        Chat with ``presence=True``), every worker's connections:
        ``[{"client": id, "identity": ..., "meta": ...}, ...]`` (the backend
        ``control`` service's ``presence``)."""
        return list(self._call(control, "presence",
                               {"service": service, "channel": channel})["presence"])

    def presence_stats(self, channel: Any, service: str = "pubsub",
                       control: str = "control") -> dict[str, int]:
        """``{"clients": n, "users": m}`` of ``channel`` in ``service``: its
        connections and distinct identities on every worker."""
        return dict(self._call(control, "presenceStats", {"service": service, "channel": channel}))

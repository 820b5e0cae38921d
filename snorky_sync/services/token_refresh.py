"""The in-band token refresh (docs/protocol.md section 6): a connection whose
token expires (``expire_connections=True``) sends a fresh token before the
old one expires and keeps its subscriptions, memberships and offsets.

Served as the service ``"token"`` at the endpoints whose ``authenticate``
hook can check a token without a request (a ``refresh(token)`` method, as
:class:`~snorky_sync.auth.ConnectionTokens` and
:class:`~snorky_sync.auth.JWTTokens` have) and ends connections
(``expire_connections=True``); elsewhere the name stays the application's.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..endpoints.access import Authenticated, Reject
from ..endpoints.expiry import expiries_of
from ..logs import RateLimitedLogger, printable
from ..metrics import counters
from ..registry import ServiceRegistry
from .base import RPCError, RPCService, rpc_command

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client
    from .base import Request

__all__ = ["REFRESH_SERVICE", "TokenRefreshService", "RefreshingTarget", "refreshes", "with_token_refresh"]

#: the service name of the refresh, reserved only where :func:`refreshes` is true
REFRESH_SERVICE = "token"

#: longer tokens are refused before any check (a JWT with many claims is a few KB)
MAX_TOKEN_LENGTH = 16384

_warn = RateLimitedLogger(logging.getLogger("snorky_sync.auth"))


def refreshes(authenticate: Any) -> bool:
    """Whether an endpoint with this ``authenticate`` hook offers the refresh:
    the hook has ``refresh(token)`` and does not say ``expire_connections=False``."""
    return callable(getattr(authenticate, "refresh", None)) and bool(
        getattr(authenticate, "expire_connections", True))


class TokenRefreshService(RPCService):
    """``refresh({token})`` -> ``{"expires": unix time or null}``.

    The token is checked by the endpoint's hook (``hook.refresh(token)``);
    its identity must be the connection's (else ``Not authorized``, and the
    connection keeps its old expiry).  The new expiry replaces the old one
    in the endpoint's :class:`~snorky_sync.endpoints.expiry.Expiries`; a
    token without an expiry lifts it.  A refused token answers the
    handshake's text (``Token expired``, ``Invalid token``, ...).
    """

    def __init__(self, hook: Callable[..., Any], name: str = REFRESH_SERVICE) -> None:
        super().__init__(name)
        self.hook = hook

    @rpc_command(lock=False)  # a JWKS fetch must not hold up the other refreshes
    def refresh(self, req: Request, token: Any) -> dict[str, Any]:
        client: Client = req.client
        if type(token) is not str or not token or len(token) > MAX_TOKEN_LENGTH:
            counters["token_refreshes_refused"] += 1
            raise RPCError("Invalid token")
        try:
            checked = self.hook.refresh(token)  # type: ignore[attr-defined]  # refreshes() saw it
        except Reject as exc:
            counters["token_refreshes_refused"] += 1
            raise RPCError(exc.reason) from None
        identity, expires = ((checked.identity, checked.expires) if isinstance(checked, Authenticated)
                             else (checked, None))
        if identity is None or identity != client.identity:
            counters["token_refreshes_refused"] += 1
            _warn.warning("refresh-identity", "refused a token refresh from %s (#%d): the token "
                          "is another identity's", printable(client.remote_address), client.id)
            raise RPCError("Not authorized")
        expiries = expiries_of(client)
        if expiries is not None:
            if expires is None:
                expiries.discard(client)
            else:
                expiries.set(client, float(expires))
        elif expires is not None:
            expires = None  # a connection without a deadline keeps having none
        counters["token_refreshes"] += 1
        return {"expires": expires}


class RefreshingTarget:
    """An endpoint's target: ``registry`` plus the ``"token"`` service.

    Routes as ``registry`` does (same services, looked up at each message, so
    services registered later are served); connections are announced to
    ``registry`` only (the refresh keeps no per-connection state).
    """

    def __init__(self, registry: ServiceRegistry, hook: Callable[..., Any]) -> None:
        if REFRESH_SERVICE in registry.services:
            raise ValueError(
                f"the service name {REFRESH_SERVICE!r} is the token refresh's at an endpoint whose "
                "authenticate hook ends connections (expire_connections=True): rename the "
                f"service {REFRESH_SERVICE!r} of {registry!r}")
        self.registry = registry
        self.service = TokenRefreshService(hook)
        router = ServiceRegistry()  # its routing, over both
        router.services = collections.ChainMap(  # type: ignore[assignment]  # a read-only view
            {REFRESH_SERVICE: self.service}, registry.services)
        self.process_message_raw = router.process_message_raw
        self.client_connected = registry.client_connected
        self.client_disconnected = registry.client_disconnected

    def __repr__(self) -> str:
        return f"<RefreshingTarget {self.registry!r}>"


def with_token_refresh(registry: ServiceRegistry, authenticate: Any) -> ServiceRegistry | RefreshingTarget:
    """What an endpoint serves: ``registry``, plus the refresh where :func:`refreshes`."""
    if authenticate is None or not refreshes(authenticate):
        return registry
    return RefreshingTarget(registry, authenticate)

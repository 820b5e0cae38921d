"""Who may open a connection: the access check every endpoint runs before it
takes a WebSocket or opens a SockJS session (origin policy, connection limits,
the ``authenticate`` hook and the identity it returns)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import request
from werkzeug.exceptions import HTTPException

from .. import wire
from ..metrics import counters
from . import origin as origin_policy

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Authenticated", "Reject", "check_access", "remote_address", "EXPIRES_KEY",
           "LOGIN_SESSION_KEY"]

#: where check_access leaves the expiry an ``authenticate`` hook returned (a
#: ``time.time()`` value) for the endpoint to enforce
EXPIRES_KEY = "snorky.expires"
#: where check_access leaves the login session an ``authenticate`` hook returned
#: (text), for the endpoint to put on the connection (``Client.login_session``)
LOGIN_SESSION_KEY = "snorky.login_session"

log = logging.getLogger("snorky_sync.websocket")


class Reject(Exception):
    """Raised by an ``authenticate`` hook to refuse a handshake.

    ``Reject(403, "why")``; the status is 401 or 403 (anything 4xx works).
    """

    def __init__(self, status: int = 403, reason: str = "Forbidden") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class Authenticated:
    """What an ``authenticate`` hook returns to give the connection an expiry.

    ``Authenticated(identity, expires=time.time() + 600)``: the connection is
    ``identity``'s until ``expires`` (seconds since the epoch), when the
    endpoint closes it with 4001 ``Token expired``
    (:data:`~snorky_sync.endpoints.expiry.TOKEN_EXPIRED_CODE`).  A hook that
    returns a bare identity (or ``expires=None``) sets no expiry.

    ``session``: the login session the connection is opened with (text: a
    server-side session id, or :func:`~snorky_sync.auth.session_identity`'s
    mark in a cookie session): ``Snorky.logout()`` /
    ``Snorky.disconnect_session(identity, session)`` close the connections
    opened with it, on every process.
    """

    __slots__ = ("identity", "expires", "session")

    def __init__(self, identity: Any, expires: float | None = None,
                 session: str | None = None) -> None:
        self.identity = identity
        self.expires = expires
        self.session = session

    def __repr__(self) -> str:
        return f"Authenticated({self.identity!r}, expires={self.expires!r}, session={self.session!r})"


def remote_address(environ: WSGIEnvironment) -> str:
    """``addr:port`` of the peer, for logs."""
    addr = environ.get("REMOTE_ADDR", "-")
    port = environ.get("REMOTE_PORT")
    return f"{addr}:{port}" if port else addr


def check_access(opts: Any, environ: WSGIEnvironment) -> tuple[Any, Reject | None]:
    """Origin allowlist (or, for cookie identities, the same origin), then the
    authenticate hook: (identity, refusal).  An expiry and a login session
    the hook returned (:class:`Authenticated`) are left in
    ``environ[EXPIRES_KEY]`` and ``environ[LOGIN_SESSION_KEY]``."""
    refused = origin_policy.check_origin(opts, environ, http=False)
    if refused is not None:
        return None, Reject(refused.status, refused.reason)
    connections = opts.connections
    if len(connections) >= opts.max_connections:
        counters["connections_refused_limit"] += 1
        return None, Reject(503, "Too many connections")
    if opts.authenticate is None:
        return None, None
    try:
        identity = opts.authenticate(request)
        if isinstance(identity, Authenticated):
            if identity.expires is not None:
                environ[EXPIRES_KEY] = float(identity.expires)
            if identity.session is not None:
                environ[LOGIN_SESSION_KEY] = str(identity.session)
            identity = identity.identity
    except Reject as exc:
        return None, exc
    except HTTPException as exc:
        return None, Reject(exc.code or 403, exc.description or exc.name)
    if identity is not None:
        try:
            size = len(wire.encode(identity))
        except TypeError:
            log.error("authenticate returned an identity that is not JSON: %r", identity)
            return None, Reject(500, "Invalid identity")
        if size > opts.max_identity_size:
            return None, Reject(400, "Identity too large")
        if connections.of_identity(identity) >= opts.max_connections_per_identity:
            counters["connections_refused_limit"] += 1
            return None, Reject(429, "Too many connections for this identity")
    return identity, None

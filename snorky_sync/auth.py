"""Identities for WebSocket connections: ready-made ``authenticate`` hooks.

An endpoint's ``authenticate(request)`` receives the handshake's Flask
request and returns the connection's identity (any JSON value), None for an
anonymous connection, or raises :class:`~snorky_sync.Reject` to refuse the
handshake (HTTP 401/403 before any upgrade; under the gevent-websocket
worker, a 1008 close right after it).

* :func:`session_identity` — the Flask session of the app the endpoint is
  mounted in (your login put ``session["user_id"]`` there).  Cookies are sent
  by the browser whatever page opens the WebSocket, so an endpoint with this
  hook accepts only its own origin (cross-site WebSocket hijacking); mark your
  own cookie-reading hooks with :func:`uses_cookies` for the same protection.
* :class:`ConnectionTokens` — signed, expiring tokens (itsdangerous) that your
  web application creates (``tokens.create(user_id)`` or
  ``SnorkyBackend.create_connection_token``) and the browser passes as
  ``?token=...`` in the WebSocket URL.  Use them when the WebSocket lives on
  another host or port than the app that knows the user.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .endpoints.websocket import Reject

__all__ = ["session_identity", "uses_cookies", "ConnectionTokens", "TOKEN_SALT"]

TOKEN_SALT = "snorky_sync.connection-token"


def uses_cookies(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Mark an ``authenticate`` hook as deriving the identity from cookies.

    The endpoint then refuses handshakes from foreign origins (their pages
    would otherwise connect as your logged-in user) unless ``allowed_origins``
    lists them.  Usable as a decorator; returns the hook.
    """
    setattr(hook, "snorky_uses_cookies", True)  # noqa: B010 (an attribute on a function)
    return hook


def session_identity(key: str = "user_id", required: bool = False) -> Callable[[Any], Any]:
    """An ``authenticate`` hook reading ``flask.session[key]``.

    ``required=True`` refuses connections without it (401); otherwise they are
    anonymous (identity None).
    """
    from flask import session

    def authenticate(request) -> Any:
        identity = session.get(key)
        if identity is None and required:
            raise Reject(401, "Not logged in")
        return identity

    return uses_cookies(authenticate)


class ConnectionTokens:
    """Signed, expiring connection tokens; an instance is an ``authenticate`` hook.

    ``ConnectionTokens(secret, max_age=3600)``; ``create(identity)`` makes a
    token (URL-safe text); calling the instance with the handshake request
    checks ``?token=`` (param name ``param``).  A missing token means an
    anonymous connection unless ``required=True`` (401); an expired token is
    refused with 401, a tampered or foreign one with 403.
    """

    def __init__(self, secret: str | bytes, max_age: float = 3600, param: str = "token",
                 required: bool = False, salt: str = TOKEN_SALT) -> None:
        if not secret or len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        self.serializer = URLSafeTimedSerializer(secret, salt=salt)
        self.max_age = max_age
        self.param = param
        self.required = required

    def create(self, identity: Any) -> str:
        """A token that authenticates as ``identity`` (any JSON value) until it expires."""
        return self.serializer.dumps({"identity": identity})

    def verify(self, token: str) -> Any:
        """The identity in ``token``; raises :class:`Reject` if invalid or expired."""
        try:
            data = self.serializer.loads(token, max_age=self.max_age)  # type: ignore[arg-type]  # seconds, float is fine
        except SignatureExpired:
            raise Reject(401, "Token expired") from None
        except BadSignature:
            raise Reject(403, "Invalid token") from None
        return data["identity"]

    def __call__(self, request) -> Any:
        args = request.args  # (``in`` first: werkzeug's .get of a missing key raises and catches)
        token = args[self.param] if self.param in args else None
        if not token:
            if self.required:
                raise Reject(401, "Token required")
            return None
        return self.verify(token)

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
  another host or port than the app that knows the user.  A token is a
  bearer credential of its identity until it expires (snorky.js reconnects
  with the same URL); ``single_use=True`` refuses its second handshake.
"""
from __future__ import annotations

import collections
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode

from .endpoints.websocket import Reject

__all__ = ["session_identity", "uses_cookies", "ConnectionTokens", "ReplayCache", "TOKEN_SALT"]

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


class ReplayCache:
    """The tokens already used, each until it expires: a bounded set.

    ``use(key, expires)`` is True the first time ``key`` is seen (before
    ``expires``, a ``time.time()``), False after.  Expired entries are
    dropped as new ones come; at ``max_entries`` live entries the one
    expiring first is dropped (the guarantee then covers the newest
    ``max_entries`` tokens; counted by ``overflows``).  One process's memory:
    not shared between processes.
    """

    __slots__ = ("max_entries", "_entries", "overflows")

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("ReplayCache(max_entries) is at least 1")
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._entries)

    def use(self, key: bytes, expires: float, now: float | None = None) -> bool:
        entries = self._entries
        now = time.time() if now is None else now
        while entries:  # roughly in expiry order (tokens arrive roughly in issue order)
            first, when = next(iter(entries.items()))
            if when > now:
                break
            del entries[first]
        if key in entries:
            return False
        if len(entries) >= self.max_entries:
            entries.popitem(last=False)
            self.overflows += 1
        entries[key] = expires
        return True


class ConnectionTokens:
    """Signed, expiring connection tokens; an instance is an ``authenticate`` hook.

    ``ConnectionTokens(secret, max_age=3600)``; ``create(identity)`` makes a
    token (URL-safe text); calling the instance with the handshake request
    checks ``?token=`` (param name ``param``).  A missing token means an
    anonymous connection unless ``required=True`` (401); an expired token is
    refused with 401, a tampered or foreign one with 403.

    A token is a bearer credential: whoever holds it connects as its
    identity, as often as they like, until it expires (``max_age`` after
    :meth:`create`) — so snorky.js can reconnect with the same URL.  With
    ``single_use=True`` each token opens one connection (WebSocket or SockJS
    session) only: a second handshake with it is refused with 403 ``Token
    already used``, even when the first was refused later for another reason.
    Used tokens are remembered until they expire, in this process
    (:class:`ReplayCache`, ``replay_cache_size`` entries): mounting such an
    endpoint where several processes serve it (``SNORKY_REDIS_URL`` or
    ``SNORKY_WORKERS`` > 1) is refused with a ValueError.  The page must then
    fetch a new token before every (re)connection.
    """

    def __init__(self, secret: str | bytes, max_age: float = 3600, param: str = "token",
                 required: bool = False, salt: str = TOKEN_SALT, single_use: bool = False,
                 replay_cache_size: int = 100_000) -> None:
        if not secret or len(secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")
        self.serializer = URLSafeTimedSerializer(secret, salt=salt)
        self.max_age = max_age
        self.param = param
        self.required = required
        self.single_use = bool(single_use)
        self.replays: ReplayCache | None = ReplayCache(replay_cache_size) if single_use else None

    def create(self, identity: Any) -> str:
        """A token that authenticates as ``identity`` (any JSON value) until it expires."""
        if self.single_use:  # two tokens made in one second must still differ
            return self.serializer.dumps({"identity": identity, "n": secrets.token_urlsafe(9)})
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
        if self.replays is None:
            return self.verify(token)
        try:
            data, issued = self.serializer.loads(
                token, max_age=self.max_age, return_timestamp=True)  # type: ignore[arg-type]
        except SignatureExpired:
            raise Reject(401, "Token expired") from None
        except BadSignature:
            raise Reject(403, "Invalid token") from None
        # keyed by the decoded signature (its base64 text has other spellings), which
        # only the secret's holder can make and which differs for every token made
        key = hashlib.sha256(base64_decode(token.rpartition(".")[2])).digest()[:16]
        if not self.replays.use(key, issued.timestamp() + self.max_age):
            raise Reject(403, "Token already used")
        return data["identity"]

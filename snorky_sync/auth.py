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
import datetime
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode

from . import checks
from .endpoints.access import Authenticated
from .endpoints.websocket import Reject
from .extras import install_command
from .logs import RateLimitedLogger

if TYPE_CHECKING:
    from flask import Request

__all__ = ["session_identity", "uses_cookies", "ConnectionTokens", "JWTTokens", "Authenticated", "ReplayCache",
           "TOKEN_SALT"]

_auth_warn = RateLimitedLogger(logging.getLogger("snorky_sync.auth"))

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
    anonymous (identity None).  A connection is tagged with its login session
    (a mark snorky_sync puts in the session after the login), so that
    :meth:`Snorky.logout() <snorky_sync.flask_ext.Snorky.logout>` in your
    logout view closes that browser's connections, on every process.
    """
    from flask import session

    from .login_sessions import LOGIN_SESSION_FIELD

    def authenticate(request: Request) -> Any:
        identity = session.get(key)
        if identity is None:
            if required:
                raise Reject(401, "Not logged in")
            return None
        mark = session.get(LOGIN_SESSION_FIELD)
        return identity if mark is None else Authenticated(identity, session=str(mark))

    setattr(authenticate, "snorky_session_key", key)  # noqa: B010 (an attribute on a function)
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
        self.max_entries = checks.count("ReplayCache(max_entries)", max_entries, 1)
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

    ``expire_connections=True`` also ends the connections when their token
    expires (its issue time + ``max_age``): the endpoint closes them with
    4001 ``Token expired`` (see :class:`Authenticated`), unless it sends a
    fresh token first (:meth:`refresh`, the ``token`` service of
    docs/protocol.md section 6).  By default a connection lives as long as
    its socket, as in Snorky 0.1.
    """

    def __init__(self, secret: str | bytes, max_age: float = 3600, param: str = "token",
                 required: bool = False, salt: str = TOKEN_SALT, single_use: bool = False,
                 replay_cache_size: int = 100_000, expire_connections: bool = False) -> None:
        if not isinstance(secret, (str, bytes)):
            raise TypeError("ConnectionTokens(secret): the token secret is a string, "
                            f"got {type(secret).__name__}")
        if len(secret) < 16:
            raise ValueError("ConnectionTokens(secret): the token secret must be at least 16 "
                             f"characters, got {len(secret)}")
        self.serializer = URLSafeTimedSerializer(secret, salt=salt)
        self.max_age = checks.seconds("ConnectionTokens(max_age=...)", max_age, above=True)
        self.param = checks.text("ConnectionTokens(param=...)", param)
        self.required = required
        self.single_use = bool(single_use)
        self.expire_connections = bool(expire_connections)
        self.replays: ReplayCache | None = ReplayCache(checks.count(
            "ConnectionTokens(replay_cache_size=...)", replay_cache_size, 1)) if single_use else None

    def create(self, identity: Any) -> str:
        """A token that authenticates as ``identity`` (any JSON value) until it expires."""
        if self.single_use:  # two tokens made in one second must still differ
            return self.serializer.dumps({"identity": identity, "n": secrets.token_urlsafe(9)})
        return self.serializer.dumps({"identity": identity})

    def verify(self, token: str) -> Any:
        """The identity in ``token``; raises :class:`Reject` if invalid or expired."""
        return self._load(token)[0]["identity"]

    def _load(self, token: str) -> tuple[Any, datetime.datetime]:
        """``token``'s payload and when it was made; :class:`Reject` if invalid or expired."""
        try:
            loaded: tuple[Any, datetime.datetime] = self.serializer.loads(
                token, max_age=self.max_age, return_timestamp=True)  # type: ignore[arg-type]  # seconds, float is fine
        except SignatureExpired:
            raise Reject(401, "Token expired") from None
        except BadSignature:
            raise Reject(403, "Invalid token") from None
        return loaded

    def __call__(self, request: Request) -> Any:
        args = request.args  # (``in`` first: werkzeug's .get of a missing key raises and catches)
        token = args[self.param] if self.param in args else None
        if not token:
            if self.required:
                raise Reject(401, "Token required")
            return None
        if self.replays is None and not self.expire_connections:
            return self.verify(token)
        return self.refresh(token)

    def refresh(self, token: str) -> Any:
        """Check ``token`` as a handshake would, without a request: its identity,
        as :class:`Authenticated` with its expiry when ``expire_connections``
        (the in-band refresh, docs/protocol.md section 6, calls this); raises
        :class:`Reject` if invalid, expired or (``single_use``) already used."""
        data, issued = self._load(token)
        expires = issued.timestamp() + self.max_age
        if self.replays is not None:
            # keyed by the decoded signature (its base64 text has other spellings), which
            # only the secret's holder can make and which differs for every token made
            key = hashlib.sha256(base64_decode(token.rpartition(".")[2])).digest()[:16]
            if not self.replays.use(key, expires):
                raise Reject(403, "Token already used")
        if self.expire_connections:
            return Authenticated(data["identity"], expires)
        return data["identity"]


class JWTTokens:
    """JSON Web Tokens (PyJWT) as connection tokens; an instance is an ``authenticate`` hook.

    For apps that already issue JWTs (single sign-on, an identity provider):
    the page passes one as ``?token=`` (param name ``param``) and the
    connection's identity is its ``identity_claim`` (``"sub"`` by default).
    Needs PyJWT with cryptography: the ``[jwt]`` extra (``pip install "PyJWT[crypto]>=2.8"``).

    Exactly one of:

    * ``key``: the verification key — the shared secret for HS256, or a
      public key (PEM text or a ``cryptography`` key object) for RS256/ES256;
    * ``jwks_url``: a JSON Web Key Set to fetch the public keys from (an
      identity provider's ``.../.well-known/jwks.json``).  Each token names
      its key by the ``kid`` of its header.  The set is cached for
      ``jwks_cache_seconds``; a ``kid`` not in the cached set makes one
      refetch (the provider rotated its keys), at most one per
      ``jwks_refetch_interval`` seconds (so made-up ``kid`` values cannot make
      every handshake fetch); still unknown, the token is refused (401
      ``Unknown key``).  An unreachable set refuses with 503.  The fetch
      happens in the handshake, through the standard library's ``urllib``
      (cooperative in a monkey-patched process).

    ``algorithms`` is required (a token's header cannot choose its own
    algorithm): e.g. ``["HS256"]``, ``["RS256"]``, ``["ES256"]``.
    ``audience`` and ``issuer``, when given, must match ``aud`` and ``iss``;
    ``exp`` and ``nbf``, when present, are checked with ``leeway`` seconds of
    clock skew.  A missing token means an anonymous connection unless
    ``required=True`` (401); an expired token is refused with 401 ``Token
    expired``; a bad signature, a wrong audience or issuer, a missing
    identity claim or a malformed token with 403 ``Invalid token``.

    ``expire_connections=True`` also ends the connections when their token's
    ``exp`` (+ ``leeway``) passes: the endpoint closes them with 4001
    ``Token expired`` (see :class:`Authenticated`), unless it sends a fresh
    token first (:meth:`refresh`, docs/protocol.md section 6); tokens without
    ``exp`` set no expiry.  By default a connection lives as long as its socket.
    """

    def __init__(self, key: Any = None, *, jwks_url: str | None = None,
                 algorithms: Sequence[str] | None = None, identity_claim: str = "sub",
                 audience: str | Sequence[str] | None = None, issuer: str | None = None,
                 leeway: float = 0, param: str = "token", required: bool = False,
                 jwks_cache_seconds: float = 300, jwks_refetch_interval: float = 10,
                 jwks_timeout: float = 5, expire_connections: bool = False) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover (the test extra installs it)
            raise ImportError("JWTTokens needs PyJWT: " + install_command("jwt")) from None
        self._jwt = jwt
        if (key is None) == (jwks_url is None):
            raise ValueError("JWTTokens: give either key=... or jwks_url=..., not both or neither")
        if algorithms is None or isinstance(algorithms, str) or not algorithms:
            raise ValueError("JWTTokens(algorithms=...): a non-empty list of accepted algorithms, "
                             'e.g. ["RS256"] (a token must not choose its own)')
        self.algorithms = [checks.text("JWTTokens(algorithms=...)", a) for a in algorithms]
        if any(a.lower() == "none" for a in self.algorithms):
            raise ValueError('JWTTokens(algorithms=...): "none" would accept unsigned tokens')
        self.key = key
        self.identity_claim = checks.text("JWTTokens(identity_claim=...)", identity_claim)
        self.audience = audience
        self.issuer = issuer
        self.leeway = checks.seconds("JWTTokens(leeway=...)", leeway)
        self.param = checks.text("JWTTokens(param=...)", param)
        self.required = required
        self.expire_connections = bool(expire_connections)
        self.jwks_url = jwks_url
        self.jwks_refetch_interval = checks.seconds("JWTTokens(jwks_refetch_interval=...)",
                                                    jwks_refetch_interval)
        self._last_refetch = float("-inf")
        self._jwks: Any = None
        if jwks_url is not None:
            self._jwks = jwt.PyJWKClient(
                checks.text("JWTTokens(jwks_url=...)", jwks_url), cache_keys=False, cache_jwk_set=True,
                lifespan=checks.seconds("JWTTokens(jwks_cache_seconds=...)", jwks_cache_seconds,
                                        above=True),
                timeout=checks.seconds("JWTTokens(jwks_timeout=...)", jwks_timeout, above=True))

    def _signing_key(self, token: str) -> Any:
        """The JWKS key the token's ``kid`` names: from the cached set, else after one refetch."""
        jwt = self._jwt
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise Reject(403, "Invalid token") from None
        if not isinstance(kid, str):
            raise Reject(403, "Invalid token")
        try:
            for refresh in (False, True):
                if refresh:
                    now = time.monotonic()
                    if now - self._last_refetch < self.jwks_refetch_interval:
                        break
                    self._last_refetch = now
                for jwk in self._jwks.get_signing_keys(refresh=refresh):
                    if jwk.key_id == kid:
                        return jwk
        except jwt.PyJWKClientConnectionError:
            _auth_warn.warning("jwks-fetch", "JWKS %s unreachable", self.jwks_url)
            raise Reject(503, "Key set unavailable") from None
        except jwt.PyJWKClientError:  # no usable keys in the set
            raise Reject(401, "Unknown key") from None
        raise Reject(401, "Unknown key")

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; raises :class:`Reject` if invalid or expired."""
        jwt = self._jwt
        key = self.key if self._jwks is None else self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": [self.identity_claim]})
        except jwt.ExpiredSignatureError:
            raise Reject(401, "Token expired") from None
        except jwt.InvalidTokenError:  # signature, aud, iss, nbf, the identity claim, format
            raise Reject(403, "Invalid token") from None
        return claims

    def verify(self, token: str) -> Any:
        """The identity in ``token``; raises :class:`Reject` if invalid or expired."""
        return self.claims(token)[self.identity_claim]

    def __call__(self, request: Request) -> Any:
        args = request.args
        token = args[self.param] if self.param in args else None
        if not token:
            if self.required:
                raise Reject(401, "Token required")
            return None
        return self.refresh(token)

    def refresh(self, token: str) -> Any:
        """Check ``token`` as a handshake would, without a request: its identity,
        as :class:`Authenticated` with its expiry when ``expire_connections``
        and it has ``exp`` (the in-band refresh, docs/protocol.md section 6,
        calls this); raises :class:`Reject` if invalid or expired."""
        claims = self.claims(token)
        identity = claims[self.identity_claim]
        exp = claims.get("exp")
        if self.expire_connections and isinstance(exp, (int, float)):
            return Authenticated(identity, exp + self.leeway)
        return identity

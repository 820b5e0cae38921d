"""The one access policy of every endpoint: which origins may use it, and
what its CORS and framing headers promise (architecture.md rule 12).

An endpoint's policy follows from its options:

* ``allowed_origins`` set: those origins only (SockJS also accepts this
  server's own origin, where its iframe transports run);
* else an identity from cookies (``session_identity``, a hook marked
  ``@uses_cookies``, ``cookie_identity=True``): this server's own origin
  only — the ``Host`` in either scheme, or ``public_origins`` behind a
  proxy that rewrites it;
* else every origin (Snorky 0.1's behaviour): the identity is a token a
  foreign page cannot read, or there is none, so a foreign page gains
  nothing from the cookies its requests carry.

The first two are *restricted*.  A request's origin is its ``Origin``
header, else the origin of its ``Referer``: a browser sends no ``Origin`` with
``<script>``, iframe or htmlfile loads, which is how a foreign page used to
borrow a victim's cookie on the SockJS JSONP and iframe transports.  On a
restricted endpoint an HTTP request carrying neither is refused; a WebSocket
handshake without ``Origin`` is not a browser's (browsers always send it) and
is judged on its credentials alone.

CORS never lets an origin the policy does not trust read an answer to a
credentialed request: a restricted endpoint echoes only the origins it
accepts.  ``iframe.html`` (and htmlfile) of a restricted endpoint carry
``Content-Security-Policy: frame-ancestors`` of the same origins, so another
site cannot frame the page that would relay the victim's session to it.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..metrics import counters

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["same_origin", "uses_cookies", "restricted", "request_origin", "origin_allowed",
           "check_origin", "cors_headers", "frame_headers", "OriginRefused"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
# what may go into a CSP source list from the configuration (no ';', ',' or spaces)
_CSP_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[A-Za-z0-9.\-\[\]:*]+$")


class OriginRefused(Exception):
    """A request the origin policy refuses: 403 with ``reason`` (client text inside: log it escaped)."""

    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def host_port(scheme: str, netloc: str) -> str:
    """``netloc`` lower-cased, without a trailing dot or the scheme's default port."""
    netloc = netloc.strip().lower().rstrip(".")
    if netloc.endswith(":" + _DEFAULT_PORTS.get(scheme, "")):
        netloc = netloc.rsplit(":", 1)[0]
    return netloc


def split_origin(origin: str) -> tuple[str, str] | None:
    """``(scheme, host[:port])`` of an origin, or None (``null``, unparsable)."""
    scheme, sep, netloc = origin.strip().rstrip("/").partition("://")
    if not sep or not netloc:
        return None  # "null" (sandboxed frames, file:) and anything unparsable
    scheme = scheme.lower()
    return scheme, host_port(scheme, netloc)


def same_origin(opts: Any, environ: WSGIEnvironment, origin: str) -> bool:
    """Is ``origin`` this server's?  ``public_origins`` when set (behind a proxy
    that rewrites Host), else the Host header, in either scheme (a
    TLS-terminating proxy hides the scheme, never the host)."""
    parts = split_origin(origin)
    if parts is None:
        return False
    if opts.public_origins:
        return parts in {split_origin(o) for o in opts.public_origins}
    host = environ.get("HTTP_HOST")
    if not host:
        return False
    return parts[1] in (host_port("http", host), host_port("https", host))


def uses_cookies(opts: Any) -> bool:
    """Does the endpoint's identity come from cookies?"""
    if opts.cookie_identity is not None:
        return bool(opts.cookie_identity)
    return bool(getattr(opts.authenticate, "snorky_uses_cookies", False))


def restricted(opts: Any) -> bool:
    """Does the policy limit origins (an allowlist, or a cookie identity)?"""
    return opts.allowed_origins is not None or uses_cookies(opts)


def request_origin(environ: WSGIEnvironment, referer: bool = True) -> str | None:
    """The request's ``Origin``, else (``referer``) its ``Referer``'s origin, else None."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None or not referer:
        return origin
    ref = environ.get("HTTP_REFERER")
    if not ref:
        return None
    try:
        parts = urlsplit(ref)
    except ValueError:
        return "null"
    if not parts.scheme or not parts.netloc:
        return "null"
    return f"{parts.scheme}://{parts.netloc}"


def origin_allowed(opts: Any, environ: WSGIEnvironment, origin: str, own: bool = False) -> bool:
    """May a page of ``origin`` use the endpoint?  ``own``: this server's
    origin counts as listed (SockJS: its iframe transports run there)."""
    allowed = opts.allowed_origins
    if allowed is not None:
        return origin in allowed or (own and same_origin(opts, environ, origin))
    if uses_cookies(opts):
        return same_origin(opts, environ, origin)
    return True


def check_origin(opts: Any, environ: WSGIEnvironment, http: bool, own: bool = False) -> OriginRefused | None:
    """The policy's verdict on a request: None to go on, else the refusal.

    ``http``: a SockJS HTTP request (the origin may come from ``Referer``;
    without either it is refused on a restricted endpoint).  Otherwise a
    WebSocket handshake: ``Origin`` only; without it, an allowlist refuses
    and a cookie identity lets it through (not a browser).  ``own``: this
    server's origin counts as listed (every SockJS request).
    """
    if not restricted(opts):
        return None
    origin = request_origin(environ, referer=http)
    cookie_rule = opts.allowed_origins is None
    if origin is None:
        if not http and cookie_rule:
            return None  # a browser always sends Origin: this is not a page borrowing cookies
        counters["handshakes_refused_origin"] += 1
        return OriginRefused("Origin required" if http else "Origin not allowed: None")
    if origin_allowed(opts, environ, origin, own=own):
        return None
    counters["handshakes_refused_origin"] += 1
    if cookie_rule:
        return OriginRefused(f"Origin not allowed: {origin} (cookie identity: same origin only)")
    return OriginRefused(f"Origin not allowed: {origin}")


def cors_headers(opts: Any, environ: WSGIEnvironment) -> list[tuple[str, str]]:
    """CORS headers of a SockJS answer.

    Credentials are allowed only for an origin the policy accepts: on a
    restricted endpoint any other origin gets no ``Access-Control-Allow-Origin``
    (the browser hides the answer).  An unrestricted endpoint echoes every
    origin (``null`` included) with credentials, as the SockJS protocol asks
    (sockjs-client sends its XHRs ``withCredentials``), since its identity is
    not in the cookies; a request without ``Origin`` gets ``*``, without.
    """
    origin = environ.get("HTTP_ORIGIN")
    headers = [("Vary", "Origin")]
    if restricted(opts):
        if origin is None or not origin_allowed(opts, environ, origin, own=True):
            return headers
    if not origin:  # not a CORS request (unrestricted): "*", which cannot go with credentials
        headers.append(("Access-Control-Allow-Origin", "*"))
    else:  # "null" (file: pages, sandboxed frames) too: "*" would not do for a credentialed XHR
        headers.append(("Access-Control-Allow-Origin", origin))
        headers.append(("Access-Control-Allow-Credentials", "true"))
    asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
    if asked:
        headers.append(("Access-Control-Allow-Headers", asked))
    return headers


def frame_headers(opts: Any) -> list[tuple[str, str]]:
    """Who may frame the endpoint's pages (``iframe.html``, htmlfile): on a
    restricted endpoint its own origin and the listed ones; else anyone."""
    if not restricted(opts):
        return []
    listed = [o for o in (*(opts.allowed_origins or ()), *(opts.public_origins or ()))
              if _CSP_ORIGIN.match(o)]
    headers = [("Content-Security-Policy", " ".join(["frame-ancestors", "'self'", *listed]))]
    if not opts.allowed_origins:  # X-Frame-Options cannot list origins; CSP wins where both are known
        headers.append(("X-Frame-Options", "SAMEORIGIN"))
    return headers

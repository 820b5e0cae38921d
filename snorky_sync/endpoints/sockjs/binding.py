"""What a SockJS session is bound to: the credentials of the request that opened it.

A session lives under a key made of the client's session id and a digest of
the requester's credentials (:func:`session_key`).  Every later request
(polls, streaming receivers, ``xhr_send``, ``jsonp_send``, on this process
or handed to the owner by the relay) computes its own key, so a request
that does not carry the same credentials finds no session: a send gets
404 "Session not found.", a receive opens a new session of its own, exactly
as for an id nobody uses.  The id alone is not a credential, and probing an
id (``xhr_send`` of ``[]``) tells nothing.  The credentials are:

* the identity, where it comes from cookies: the endpoint's
  ``authenticate`` hook runs again on every request (a refusal matches no
  session), so another user, or a request without the cookie, is someone else;
  with the login session the hook names (``Authenticated(session=...)``), if any;
* the query string but for SockJS's own parameters (``c``, ``callback``,
  ``t``, ``i``), as sent: a connection token (``?token=``) is there, and
  sockjs-client repeats the base URL's query on every request;
* for a session with neither (anonymous), the client address, as
  :func:`~snorky_sync.endpoints.admission.client_address` sees it
  (``REMOTE_ADDR``, or X-Forwarded-For from ``SNORKY_TRUSTED_PROXIES``),
  unless ``bind_address`` (``SNORKY_SOCKJS_BIND_ADDRESS``) is off.  Its
  limits: behind a proxy that is not listed as trusted every client has the
  proxy's address, so the binding adds nothing there; and a client whose
  address changes within a session (several balancer addresses without
  trusted proxies, a phone changing networks) loses the session, and
  sockjs-client opens a new one.
"""
from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from flask import request

from ..access import Authenticated
from ..admission import client_address
from ..origin import uses_cookies

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["session_key"]

#: query parameters sockjs-client adds per request (callback names, cache busters)
_OWN_PARAMS = frozenset({b"c", b"callback", b"t", b"i"})


def _part(h: hashlib._Hash, kind: bytes, value: bytes) -> None:
    h.update(kind + len(value).to_bytes(4, "big") + value)


def session_key(opts: Any, environ: WSGIEnvironment, sid: str) -> str:
    """The key of the session ``sid`` for this request's credentials: ``sid.<digest>``
    (a SockJS session id holds no dot)."""
    h = hashlib.sha256()
    anonymous = True
    if opts.authenticate is not None and uses_cookies(opts):
        try:
            identity = opts.authenticate(request)
        except Exception:  # Reject, an HTTP error: this requester has no session
            return sid + "." + secrets.token_hex(16)
        if isinstance(identity, Authenticated):  # and its login session, when it names one
            if identity.session is not None:
                _part(h, b"s", str(identity.session).encode("utf-8", "replace"))
            identity = identity.identity
        if identity is not None:
            anonymous = False
            _part(h, b"i", orjson.dumps(identity, option=orjson.OPT_SORT_KEYS))
    query = environ.get("QUERY_STRING", "")
    if query:
        # raw, as sent (no unquoting: linear, and the client repeats it byte for byte)
        params = sorted(p for p in query.encode("latin-1", "replace").split(b"&")
                        if p and p.partition(b"=")[0] not in _OWN_PARAMS)
        if params:
            anonymous = False
            _part(h, b"q", b"&".join(params))
    if anonymous and opts.bind_address:
        _part(h, b"a", client_address(environ, opts.trusted_proxies).encode("utf-8", "replace"))
    return sid + "." + h.hexdigest()[:32]

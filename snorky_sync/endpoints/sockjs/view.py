"""The Flask view of a SockJS endpoint: routes every SockJS URL to its handler.

Every request meets the endpoint's access policy first (:mod:`..origin`: on a
restricted endpoint, ``Origin`` or ``Referer`` must be an origin it accepts,
CORS credentials only for those), then finds its session under the key of
its own credentials (:mod:`.binding`), and a send is refused for its size
and for a missing session before its body is read.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from flask import Response, request

from ...logs import printable
from ...metrics import counters
from .. import origin as policy
from ..access import EXPIRES_KEY, LOGIN_SESSION_KEY, Reject, check_access, remote_address
from ..expiry import Expiries
from ..websocket import WebSocketOptions, make_websocket_view, refuse_adopted
from . import protocol
from .binding import session_key
from .manager import SessionManager
from .transports import LocalReceiver, Source, process_body, request_socket, stream
from .websocket import SockJSWebSocketClient, make_process

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

    from ..websocket import Target

__all__ = ["SockJSOptions", "SockJSEndpoint", "make_sockjs_view"]

log = logging.getLogger("snorky_sync.sockjs")

DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"


@dataclass
class SockJSOptions(WebSocketOptions):
    """WebSocket options plus SockJS's own (defaults from :mod:`snorky_sync.settings`)."""

    heartbeat: float = 25.0            # seconds between "h" frames on an idle receiver
    disconnect_delay: float = 5.0      # seconds without a receiver before a session ends
    response_limit: int = 128 * 1024   # bytes per streaming response before the client re-opens it
    max_body_size: int = 256 * 1024    # largest xhr_send / jsonp_send body (larger: 413)
    cookie_needed: bool = False        # JSESSIONID cookie (for load balancers that stick on it)
    websocket: bool = True             # offer the WebSocket transport
    sockjs_url: str = DEFAULT_SOCKJS_URL  # sockjs-client loaded by the iframe page
    bind_address: bool = True          # anonymous sessions are bound to the client address
    trusted_proxies: Sequence[str] | None = None  # whose X-Forwarded-For gives that address


_COOKIE_OK = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_NOT_FOUND = "Session not found."


def _text(body: str, status: int, headers: Sequence[tuple[str, str]] = ()) -> Response:
    return Response(body, status=status, headers=list(headers),
                    content_type="text/plain; charset=UTF-8")


def _empty(status: int, headers: Sequence[tuple[str, str]] = ()) -> Response:
    resp = Response(b"", status=status, headers=list(headers))
    del resp.headers["Content-Type"]
    return resp


#: route -> (its HTTP method, the Allow header of its 405, the methods an OPTIONS
#: preflight gets, or None: OPTIONS is refused like any other method)
_ROUTES: dict[str, tuple[str, str, str | None]] = {
    "greeting": ("GET", "GET", None),
    "info": ("GET", "OPTIONS, GET", "OPTIONS, GET"),
    "iframe": ("GET", "GET", None),
    "xhr": ("POST", "POST", "OPTIONS, POST"),
    "xhr_streaming": ("POST", "POST", "OPTIONS, POST"),
    "eventsource": ("GET", "GET", None),
    "htmlfile": ("GET", "GET", None),
    "jsonp": ("GET", "GET", None),
    "xhr_send": ("POST", "POST", "OPTIONS, POST"),
    "jsonp_send": ("POST", "POST", None),
}


class SockJSEndpoint:
    """Every URL under one SockJS base URL: :meth:`view` (the Flask view) finds
    the route, answers OPTIONS and wrong methods, and calls the route's method:
    :meth:`greeting`, :meth:`info`, :meth:`iframe`, :meth:`websocket`,
    :meth:`raw_websocket`, one per receiving transport (:meth:`xhr`,
    :meth:`xhr_streaming`, :meth:`eventsource`, :meth:`htmlfile`, :meth:`jsonp`)
    and one per sending one (:meth:`xhr_send`, :meth:`jsonp_send`)."""

    def __init__(self, target: Target, opts: SockJSOptions, name: str) -> None:
        self.opts = opts
        self.manager = manager = SessionManager(target, opts, name)
        broker = getattr(target, "broker", None)
        if broker is not None and broker.distributed:
            from .relay import Relay
            manager.relay = Relay(manager, broker)
        # origins are judged here, by the SockJS rule (Origin, else Referer, own origin
        # listed); then the rest of the WebSocket endpoint's checks without its origin test
        self.access_opts = dataclasses.replace(opts, allowed_origins=None, cookie_identity=False)
        self.ws_session_view = make_websocket_view(target, self.access_opts, SockJSWebSocketClient,
                                                   make_process(target, opts))
        self.ws_raw_view = make_websocket_view(target, self.access_opts)
        self.expiries = Expiries()  # the polling sessions' (the WebSocket views keep their own)
        self.iframe_body, self.iframe_etag = protocol.iframe_page(opts.sockjs_url)
        self.framing = policy.frame_headers(opts)
        self.restricted = policy.restricted(opts)
        self.prefix_len = len(name)

    # -- dispatch ---------------------------------------------------------------------
    def view(self, rest: str = "") -> Response:
        """The Flask view of every rule under the base URL."""
        environ = request.environ
        # the path as sent (the router would forgive doubled slashes; the protocol does not)
        rest = environ.get("PATH_INFO", "")[self.prefix_len:]
        kind, sid = protocol.parse_path(rest[1:] if rest.startswith("/") else rest)
        if kind == "websocket":
            return self.websocket(environ)
        if kind == "raw_websocket":
            return self.raw_websocket(environ)
        route = _ROUTES.get(kind)
        if route is None:
            return _empty(404)
        method, allow, preflight = route
        req_method = environ.get("REQUEST_METHOD")
        if req_method == "OPTIONS" and preflight is not None:
            return self._options(environ, preflight)
        if req_method != method:
            return _empty(405, [("Allow", allow)])
        handler: Callable[..., Response] = getattr(self, kind)
        return handler(environ) if sid is None else handler(environ, sid)

    # -- shared parts ---------------------------------------------------------------------
    def _refused(self, environ: WSGIEnvironment, headers: Sequence[tuple[str, str]] = ()) -> Response | None:
        """The policy's answer to a request it refuses (403), or None."""
        if not self.restricted:
            return None
        refusal = policy.check_origin(self.opts, environ, http=True, own=True)
        if refusal is None:
            return None
        counters["handshakes_refused"] += 1
        log.info("refused SockJS request from %s: %s", remote_address(environ), printable(refusal.reason))
        return _text("Origin not allowed", 403, headers)

    def _cors(self, environ: WSGIEnvironment) -> list[tuple[str, str]]:
        return policy.cors_headers(self.opts, environ)

    def _cookie(self) -> list[tuple[str, str]]:
        if not self.opts.cookie_needed:
            return []
        value = request.cookies.get("JSESSIONID", "dummy")
        if not _COOKIE_OK.match(value):
            value = "dummy"
        return [("Set-Cookie", f"JSESSIONID={value}; Path=/")]

    def _options(self, environ: WSGIEnvironment, methods: str) -> Response:
        return _empty(204, [*protocol.cache_forever(), ("Access-Control-Max-Age", str(protocol.YEAR)),
                            ("Access-Control-Allow-Methods", methods), *self._cors(environ)])

    # -- static routes ----------------------------------------------------------------------
    def greeting(self, environ: WSGIEnvironment) -> Response:
        return Response(protocol.WELCOME, content_type="text/plain; charset=UTF-8")

    def info(self, environ: WSGIEnvironment) -> Response:
        opts = self.opts
        headers = [("Cache-Control", protocol.NO_CACHE), *self._cors(environ)]
        refusal = self._refused(environ, headers)
        if refusal is not None:
            return refusal
        body = orjson.dumps({"websocket": opts.websocket, "cookie_needed": opts.cookie_needed,
                             "origins": ["*:*"], "entropy": secrets.randbits(32)})
        return Response(body, headers=headers, content_type="application/json; charset=UTF-8")

    def iframe(self, environ: WSGIEnvironment) -> Response:
        refusal = self._refused(environ)
        if refusal is not None:
            return refusal
        headers = [*protocol.cache_forever(), ("ETag", self.iframe_etag), *self.framing]
        if environ.get("HTTP_IF_NONE_MATCH") == self.iframe_etag:
            return _empty(304, headers)
        return Response(self.iframe_body, headers=headers, content_type="text/html; charset=UTF-8")

    # -- WebSocket ----------------------------------------------------------------------------
    def websocket(self, environ: WSGIEnvironment) -> Response:
        """``/<server>/<session>/websocket``: SockJS framing over a WebSocket."""
        return self._websocket(environ, self.ws_session_view)

    def raw_websocket(self, environ: WSGIEnvironment) -> Response:
        """``/websocket``: plain messages, as on ``/ws``."""
        return self._websocket(environ, self.ws_raw_view)

    def _websocket(self, environ: WSGIEnvironment, ws_view: Callable[[], Response]) -> Response:
        opts = self.opts
        if not opts.websocket:
            return _empty(404)
        if environ.get("REQUEST_METHOD") != "GET":
            return _empty(405, [("Allow", "GET")])
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return _text('Can "Upgrade" only to "WebSocket".', 400)
        if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
            return _text('"Connection" must be "Upgrade".', 400)
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() in ("7", "8"):
            environ["HTTP_SEC_WEBSOCKET_VERSION"] = "13"  # hybi-07/08: the same framing as RFC 6455
        refusal = policy.check_origin(opts, environ, http=False, own=True) if self.restricted else None
        if refusal is not None:
            counters["handshakes_refused"] += 1
            adopted = environ.get("wsgi.websocket")
            if adopted is not None:  # gevent-websocket already answered 101: a close frame
                return refuse_adopted(adopted, remote_address(environ),
                                      Reject(refusal.status, "Origin not allowed"))
            log.info("refused SockJS WebSocket from %s: %s", remote_address(environ),
                     printable(refusal.reason))
            return _text("Origin not allowed", 403)
        return ws_view()

    # -- receiving transports -----------------------------------------------------------------
    def xhr(self, environ: WSGIEnvironment, sid: str) -> Response:
        return self._receive(environ, "xhr", sid, protocol.WRAPPERS["xhr"])

    def xhr_streaming(self, environ: WSGIEnvironment, sid: str) -> Response:
        return self._receive(environ, "xhr_streaming", sid, protocol.WRAPPERS["xhr_streaming"],
                             protocol.STREAMING_PRELUDE)

    def eventsource(self, environ: WSGIEnvironment, sid: str) -> Response:
        return self._receive(environ, "eventsource", sid, protocol.WRAPPERS["eventsource"],
                             protocol.PRELUDES["eventsource"])

    def htmlfile(self, environ: WSGIEnvironment, sid: str) -> Response:
        callback = _callback()
        if isinstance(callback, Response):
            return callback
        return self._receive(environ, "htmlfile", sid, protocol.WRAPPERS["htmlfile"],
                             protocol.htmlfile_prelude(callback))

    def jsonp(self, environ: WSGIEnvironment, sid: str) -> Response:
        callback = _callback()
        if isinstance(callback, Response):
            return callback
        return self._receive(environ, "jsonp", sid, protocol.jsonp_wrapper(callback))

    def _receive(self, environ: WSGIEnvironment, transport: str, sid: str, wrap: Callable[[bytes], bytes],
                 prelude: bytes | None = None) -> Response:
        """A receive request: attached to its session (found under the key of its
        credentials, created, or served by the process that owns it), streamed."""
        opts, manager = self.opts, self.manager
        method, content_type = protocol.RECEIVERS[transport]
        headers = [("Cache-Control", protocol.NO_CACHE), *self._cookie()]
        if method == "POST" or transport == "eventsource":  # XHR and EventSource need CORS
            headers += self._cors(environ)
        refusal = self._refused(environ, headers)
        if refusal is not None:
            return refusal
        if transport == "htmlfile":
            headers += self.framing
        key = session_key(opts, environ, sid)
        limit = 1 if transport in protocol.POLLING else opts.response_limit
        relay = manager.relay
        session = manager.get(key)
        timeout = None
        source: Source
        if session is not None:
            source = session
        else:
            owner, token = relay.claim(key) if relay is not None else (None, None)
            if owner is not None:  # another process holds the session: it serves this request
                source = relay.remote_source(owner, key)
                timeout = opts.heartbeat * 2 + 5
            else:
                admission = opts.connect_rate
                retry = admission.refuse(environ) if admission is not None else None
                if retry is not None:  # a new session counts as a new connection
                    if relay is not None:
                        relay.release(key, token)
                    return _text("Too many new connections", 503,
                                 [*headers, ("Retry-After", str(retry))])
                identity, access = check_access(self.access_opts, environ)
                if access is not None:
                    counters["handshakes_refused"] += 1
                    if relay is not None:
                        relay.release(key, token)
                    log.info("refused SockJS session from %s: %s %s", remote_address(environ),
                             access.status, printable(access.reason))
                    return _text(access.reason, access.status, headers)
                source = session = manager.create(key, transport, remote_address(environ), identity, token,
                                                  environ.get(LOGIN_SESSION_KEY))
                expires = environ.get(EXPIRES_KEY)
                if expires is not None:  # its token's expiry: c[4001,"Token expired"] then
                    self.expiries.set(session, expires)
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
            headers.append(("Connection", "close"))  # no length, no chunks: the close ends the body
        receiver = LocalReceiver(transport, wrap, limit, request_socket(environ), timeout)
        return Response(stream(receiver, source, prelude, opts.write_timeout), headers=headers,
                        content_type=content_type, direct_passthrough=True)

    # -- sending transports ---------------------------------------------------------------------
    def xhr_send(self, environ: WSGIEnvironment, sid: str) -> Response:
        return self._send(environ, "xhr_send", sid)

    def jsonp_send(self, environ: WSGIEnvironment, sid: str) -> Response:
        return self._send(environ, "jsonp_send", sid)

    def _read_body(self) -> bytes | None:
        """The send's body, at most ``max_body_size`` bytes read (None: larger)."""
        limit = self.opts.max_body_size
        body = request.stream.read(limit + 1)
        return None if len(body) > limit else body

    def _send(self, environ: WSGIEnvironment, transport: str, sid: str) -> Response:
        """A send: refused for its size and for a missing session before its body
        is read; processed by the session (here, or relayed to its owner)."""
        opts, manager = self.opts, self.manager
        headers = [("Cache-Control", protocol.NO_CACHE), *self._cookie()]
        if transport == "xhr_send":
            headers += self._cors(environ)
        refusal = self._refused(environ, headers)
        if refusal is not None:
            return refusal
        too_large = _text("Payload too large.", 413, [*headers, ("Connection", "close")])
        length = request.content_length
        if length is not None and length > opts.max_body_size:
            return too_large  # not read: the size is known before the session is looked for
        form = transport == "jsonp_send" and request.mimetype == "application/x-www-form-urlencoded"
        key = session_key(opts, environ, sid)
        session = manager.get(key)
        if session is None or session.closing is not None:
            relay = manager.relay
            if session is None and relay is not None and relay.owner_of(key) is not None:
                body = self._read_body()
                if body is None:
                    return too_large
                status, text = relay.send(key, body, form)
                return _reply_sent(transport, status, text, headers)
            return _text(_NOT_FOUND, 404, headers)  # the body is neither read nor parsed
        status, text = process_body(manager, session, self._read_body, form)
        if status == 413:
            return too_large
        return _reply_sent(transport, status, text, headers)


def make_sockjs_view(target: Target, opts: SockJSOptions, name: str) -> tuple[Callable[..., Any], SessionManager]:
    """The view serving every URL under a SockJS base URL for ``target`` (a
    ServiceRegistry, or any object with its three connection methods), and the
    endpoint's session manager."""
    endpoint = SockJSEndpoint(target, opts, name)
    return endpoint.view, endpoint.manager


def _callback() -> str | Response:
    """The htmlfile / JSONP callback name of the request, or the 500 refusing it."""
    callback = request.args.get("c") or request.args.get("callback")
    if not callback:
        return _text('"callback" parameter required', 500)
    if not protocol.callback_ok(callback):
        return _text('invalid "callback" parameter', 500)
    return callback


def _reply_sent(transport: str, status: int, text: str, headers: Sequence[tuple[str, str]]) -> Response:
    if status == 204:
        return _text("ok", 200, headers) if transport == "jsonp_send" else _text("", 204, headers)
    if status == 413:
        return _text("Payload too large.", 413, [*headers, ("Connection", "close")])
    return _text(text or _NOT_FOUND, status, headers)

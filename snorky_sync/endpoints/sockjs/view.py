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
from typing import Any

import orjson
from flask import Response, request

from ...logs import printable
from ...metrics import counters
from .. import origin as policy
from ..websocket import (
    Reject,
    WebSocketOptions,
    _check_access,
    _refuse_after_upgrade,
    _remote_address,
    make_websocket_view,
)
from . import protocol
from .binding import session_key
from .manager import SessionManager
from .transports import LocalReceiver, process_body, request_socket, stream
from .websocket import SockJSWebSocketClient, make_process

__all__ = ["SockJSOptions", "make_sockjs_view"]

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


def _text(body: str, status: int, headers=()) -> Response:
    return Response(body, status=status, headers=list(headers),
                    content_type="text/plain; charset=UTF-8")


def _empty(status: int, headers=()) -> Response:
    resp = Response(b"", status=status, headers=list(headers))
    del resp.headers["Content-Type"]
    return resp


def make_sockjs_view(target, opts: SockJSOptions, name: str) -> tuple[Callable[..., Any], SessionManager]:
    """The view serving every URL under a SockJS base URL for ``target`` (a
    ServiceRegistry, or any object with its three connection methods)."""
    manager = SessionManager(target, opts, name)
    broker = getattr(target, "broker", None)
    if broker is not None and broker.distributed:
        from .relay import Relay
        manager.relay = Relay(manager, broker)
    # origins are judged here, by the SockJS rule (Origin, else Referer, own origin
    # listed); then the rest of the WebSocket endpoint's checks without its origin test
    access_opts = dataclasses.replace(opts, allowed_origins=None, cookie_identity=False)
    ws_session_view = make_websocket_view(target, access_opts, SockJSWebSocketClient,
                                          make_process(target, opts))
    ws_raw_view = make_websocket_view(target, access_opts)
    iframe_body, iframe_etag = protocol.iframe_page(opts.sockjs_url)
    framing = policy.frame_headers(opts)
    restricted = policy.restricted(opts)

    def refused(environ, headers=()) -> Response | None:
        """The policy's answer to a request it refuses (403), or None."""
        if not restricted:
            return None
        refusal = policy.check_origin(opts, environ, http=True, own=True)
        if refusal is None:
            return None
        counters["handshakes_refused"] += 1
        log.info("refused SockJS request from %s: %s", _remote_address(environ), printable(refusal.reason))
        return _text("Origin not allowed", 403, headers)

    def cors(environ) -> list[tuple[str, str]]:
        return policy.cors_headers(opts, environ)

    def no_cache() -> list[tuple[str, str]]:
        return [("Cache-Control", protocol.NO_CACHE)]

    def cookie(environ) -> list[tuple[str, str]]:
        if not opts.cookie_needed:
            return []
        value = request.cookies.get("JSESSIONID", "dummy")
        if not _COOKIE_OK.match(value):
            value = "dummy"
        return [("Set-Cookie", f"JSESSIONID={value}; Path=/")]

    def options(environ, methods: str) -> Response:
        return _empty(204, [*protocol.cache_forever(), ("Access-Control-Max-Age", str(protocol.YEAR)),
                            ("Access-Control-Allow-Methods", methods), *cors(environ)])

    def not_allowed(methods: str) -> Response:
        return _empty(405, [("Allow", methods)])

    def info(environ) -> Response:
        headers = [*no_cache(), *cors(environ)]
        refusal = refused(environ, headers)
        if refusal is not None:
            return refusal
        body = orjson.dumps({"websocket": opts.websocket, "cookie_needed": opts.cookie_needed,
                             "origins": ["*:*"], "entropy": secrets.randbits(32)})
        return Response(body, headers=headers, content_type="application/json; charset=UTF-8")

    def iframe(environ) -> Response:
        refusal = refused(environ)
        if refusal is not None:
            return refusal
        headers = [*protocol.cache_forever(), ("ETag", iframe_etag), *framing]
        if environ.get("HTTP_IF_NONE_MATCH") == iframe_etag:
            return _empty(304, headers)
        return Response(iframe_body, headers=headers, content_type="text/html; charset=UTF-8")

    def websocket(environ, raw: bool):
        if not opts.websocket:
            return _empty(404)
        if environ.get("REQUEST_METHOD") != "GET":
            return not_allowed("GET")
        if "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
            return _text('Can "Upgrade" only to "WebSocket".', 400)
        if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
            return _text('"Connection" must be "Upgrade".', 400)
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() in ("7", "8"):
            environ["HTTP_SEC_WEBSOCKET_VERSION"] = "13"  # hybi-07/08: the same framing as RFC 6455
        refusal = policy.check_origin(opts, environ, http=False, own=True) if restricted else None
        if refusal is not None:
            counters["handshakes_refused"] += 1
            adopted = environ.get("wsgi.websocket")
            if adopted is not None:  # gevent-websocket already answered 101: a close frame
                _refuse_after_upgrade(adopted.handler.socket, _remote_address(environ),
                                      Reject(refusal.status, "Origin not allowed"))
                adopted.closed = True
                adopted.handler.close_connection = True
                return Response(status=204)
            log.info("refused SockJS WebSocket from %s: %s", _remote_address(environ),
                     printable(refusal.reason))
            return _text("Origin not allowed", 403)
        return ws_raw_view() if raw else ws_session_view()

    def receive(environ, transport: str, sid: str) -> Response:
        method, content_type = protocol.RECEIVERS[transport]
        req_method = environ.get("REQUEST_METHOD")
        if req_method == "OPTIONS" and method == "POST":
            return options(environ, "OPTIONS, POST")
        if req_method != method:
            return not_allowed(method)
        wrap = protocol.WRAPPERS.get(transport)
        prelude = protocol.PRELUDES.get(transport)
        if transport in ("htmlfile", "jsonp"):
            callback = request.args.get("c") or request.args.get("callback")
            if not callback:
                return _text('"callback" parameter required', 500)
            if not protocol.callback_ok(callback):
                return _text('invalid "callback" parameter', 500)
            if transport == "jsonp":
                wrap = protocol.jsonp_wrapper(callback)
            else:
                prelude = protocol.htmlfile_prelude(callback)
        headers = [*no_cache(), *cookie(environ)]
        if method == "POST" or transport == "eventsource":  # XHR and EventSource need CORS
            headers += cors(environ)
        refusal = refused(environ, headers)
        if refusal is not None:
            return refusal
        if transport == "htmlfile":
            headers += framing
        key = session_key(opts, environ, sid)
        limit = 1 if transport in protocol.POLLING else opts.response_limit
        relay = manager.relay
        session = manager.get(key)
        source = session
        timeout = None
        if session is None:
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
                identity, access = _check_access(access_opts, environ)
                if access is not None:
                    counters["handshakes_refused"] += 1
                    if relay is not None:
                        relay.release(key, token)
                    log.info("refused SockJS session from %s: %s %s", _remote_address(environ),
                             access.status, printable(access.reason))
                    return _text(access.reason, access.status, headers)
                source = manager.create(key, transport, _remote_address(environ), identity, token)
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
            headers.append(("Connection", "close"))  # no length, no chunks: the close ends the body
        assert wrap is not None  # every receiving transport has a wrapper
        receiver = LocalReceiver(transport, wrap, limit, request_socket(environ), timeout)
        return Response(stream(receiver, source, prelude, opts.write_timeout), headers=headers,
                        content_type=content_type, direct_passthrough=True)

    def read_body() -> bytes | None:
        """The send's body, at most ``max_body_size`` bytes read (None: larger)."""
        body = request.stream.read(opts.max_body_size + 1)
        return None if len(body) > opts.max_body_size else body

    def send(environ, transport: str, sid: str) -> Response:
        req_method = environ.get("REQUEST_METHOD")
        if transport == "xhr_send" and req_method == "OPTIONS":
            return options(environ, "OPTIONS, POST")
        if req_method != "POST":
            return not_allowed("POST")
        headers = [*no_cache(), *cookie(environ)]
        if transport == "xhr_send":
            headers += cors(environ)
        refusal = refused(environ, headers)
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
                body = read_body()
                if body is None:
                    return too_large
                status, text = relay.send(key, body, form)
                return _reply_sent(transport, status, text, headers)
            return _text(_NOT_FOUND, 404, headers)  # the body is neither read nor parsed
        status, text = process_body(manager, session, read_body, form)
        if status == 413:
            return too_large
        return _reply_sent(transport, status, text, headers)

    prefix_len = len(name)

    def view(rest: str = "") -> Response:
        environ = request.environ
        # the path as sent (the router would forgive doubled slashes; the protocol does not)
        rest = environ.get("PATH_INFO", "")[prefix_len:]
        kind, sid = protocol.parse_path(rest[1:] if rest.startswith("/") else rest)
        req_method = environ.get("REQUEST_METHOD")
        if kind in protocol.RECEIVERS and sid is not None:
            return receive(environ, kind, sid)
        if kind in protocol.SENDERS and sid is not None:
            return send(environ, kind, sid)
        if kind == "websocket":
            return websocket(environ, False)
        if kind == "raw_websocket":
            return websocket(environ, True)
        if kind == "info":
            if req_method == "OPTIONS":
                return options(environ, "OPTIONS, GET")
            return info(environ) if req_method == "GET" else not_allowed("OPTIONS, GET")
        if kind == "greeting":
            if req_method != "GET":
                return not_allowed("GET")
            return Response(protocol.WELCOME, content_type="text/plain; charset=UTF-8")
        if kind == "iframe":
            return iframe(environ) if req_method == "GET" else not_allowed("GET")
        return _empty(404)

    return view, manager


def _reply_sent(transport: str, status: int, text: str, headers) -> Response:
    if status == 204:
        return _text("ok", 200, headers) if transport == "jsonp_send" else _text("", 204, headers)
    if status == 413:
        return _text("Payload too large.", 413, [*headers, ("Connection", "close")])
    return _text(text or _NOT_FOUND, status, headers)

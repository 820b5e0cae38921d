"""The WebSocket endpoint: one Flask view for every supported server.

How the view gets its socket:

* ``gunicorn -k gevent`` (``environ['gunicorn.socket']``) and the embedded
  server (``environ['snorky.socket']``, see :mod:`snorky_sync.embedded`): the
  view checks origin and identity, then performs the handshake itself
  (:mod:`.handshake`), so a refused connection gets a plain HTTP 401/403 and
  nothing is upgraded.
* ``gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker``
  (``environ['wsgi.websocket']``): gevent-websocket has already answered
  ``101``; the view adopts that socket and never handshakes again.  A refusal
  can then only be a close frame (1008) right after the upgrade.

In every case the connection is then read by :mod:`.reader` (plain data
frames by a measured fast path, everything else by ``websockets``' sans-I/O
protocol; quiet connections parked without a greenlet), every complete frame
of one ``recv`` is processed before the next read, and everything written
goes through the :class:`~snorky_sync.client.Client` writer.
gevent-websocket's own read/write/close paths are never used.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import gevent
import gevent.event
import gevent.socket
from flask import Response, request

from .. import wire
from ..client import Client, close_frame
from ..logs import RateLimitedLogger, printable
from ..metrics import counters
from ..outbound import DEFAULT as DEFAULT_BUDGET
from ..outbound import OutboundBudget
from . import connections as _connections
from . import origin as origin_policy
from .access import EXPIRES_KEY, LOGIN_SESSION_KEY, Reject, check_access, remote_address
from .admission import ConnectRate
from .expiry import Expiries
from .handshake import HandshakeError, accept_handshake
from .limits import InputBudget
from .pinger import Pinger
from .reader import Reader

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


__all__ = ["WebSocketOptions", "make_websocket_view", "refuse_after_upgrade", "refuse_adopted", "Reject", "close_all", "live_clients",
           "same_origin", "uses_cookies", "Target"]

log = logging.getLogger("snorky_sync.websocket")
_warn = RateLimitedLogger(log)  # lines a client causes: at most 10 of a kind per 10 s
_open_close = RateLimitedLogger(log, burst=200, period=1.0)  # DEBUG: every connection, within reason

_spawn = gevent.spawn
_socket_class = gevent.socket.socket


class Target(Protocol):
    """What an endpoint serves: a :class:`~snorky_sync.registry.ServiceRegistry`,
    or any object with these three methods."""

    def client_connected(self, client: Client) -> None: ...
    def process_message_raw(self, client: Client, raw: bytes | str) -> None: ...
    def client_disconnected(self, client: Client) -> None: ...


@dataclass
class WebSocketOptions:
    """Per-endpoint settings (defaults from :mod:`snorky_sync.settings`)."""

    ping_interval: float = 90.0
    max_frame_size: int = 64 * 1024  # largest incoming message (Snorky 0.1 took 10 MiB)
    allowed_origins: Sequence[str] | None = None
    authenticate: Callable[[Any], Any] | None = None
    max_queue_frames: int = 10000
    max_queue_bytes: int = 1024 * 1024  # backlog behind the frame being written
    write_timeout: float = 5.0       # seconds a write may make no progress (0: off)
    close_timeout: float = 5.0
    recv_size: int = 65536
    rate_limit: float = 1000.0       # messages/s per connection (0: off); excess closes with 1008
    rate_burst: float = 2000.0
    byte_rate: float = 256 * 1024    # bytes/s per connection (0: off); excess is read later, not refused
    byte_burst: float = 1024 * 1024
    max_connections: int = 20000     # per process; more are refused with 503
    max_connections_per_identity: int = 100  # more are refused with 429
    max_identity_size: int = 1024    # bytes of JSON; larger identities are refused (400)
    socket_sndbuf: int = 0           # SO_SNDBUF per connection (0: the OS default, autotuned)
    # identity from cookies: only the same origin (or allowed_origins) may connect.
    # None: ask the authenticate hook (its ``snorky_uses_cookies`` attribute)
    cookie_identity: bool | None = None
    public_origins: Sequence[str] | None = None  # this server's origin(s) behind a proxy
    connect_rate: ConnectRate | None = None     # new connections/s, checked before anything
    #: the app's open connections (max_connections counts them) and outbound budget
    connections: _connections.Connections = field(default=_connections.DEFAULT, repr=False)
    outbound: OutboundBudget = field(default=DEFAULT_BUDGET, repr=False)


class _Hijacked(Response):
    """What the view returns once it owns the socket: the server writes nothing."""

    def __init__(self) -> None:
        # a content type given: werkzeug's default-mimetype lookup raises and catches a KeyError
        super().__init__(content_type="text/plain")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        environ["snorky.hijacked"] = True
        if "gunicorn.socket" in environ:
            raise StopIteration()  # gunicorn: stop serving this connection, write nothing
        return []


# the origin policy lives in .origin (one for every endpoint); these names stay importable here
_host_port = origin_policy.host_port
_split_origin = origin_policy.split_origin
same_origin = origin_policy.same_origin
uses_cookies = origin_policy.uses_cookies


def make_websocket_view(registry: Target, opts: WebSocketOptions, client_class: type[Client] = Client,
                        process: Callable[[Client, bytes], None] | None = None) -> Callable[[], Response]:
    """The Flask view serving ``registry`` over WebSocket.

    ``client_class`` and ``process(client, data)`` (default: the registry's
    ``process_message_raw``) let another framing ride on WebSocket (SockJS).
    """
    pinger = Pinger(opts.ping_interval)
    serving = (registry, opts, pinger, client_class, process or registry.process_message_raw, Expiries())

    admission = opts.connect_rate

    def snorky_websocket() -> Response:
        environ = request.environ
        adopted = environ.get("wsgi.websocket")
        if admission is not None:
            retry = admission.refuse(environ)
            if retry is not None:
                if adopted is not None:  # already upgraded: 1013 Try Again Later
                    return refuse_adopted(adopted, remote_address(environ),
                                          Reject(503, "Try again later"), 1013)
                return Response("Too many new connections\n", status=503, mimetype="text/plain",
                                headers={"Retry-After": str(retry)})
        remote = remote_address(environ)
        if adopted is not None:
            sock = adopted.handler.socket
            identity, refusal = check_access(opts, environ)
            if refusal is not None:
                return refuse_adopted(adopted, remote, refusal)
            adopted.closed = True  # gevent-websocket must not write its own close
            adopted.handler.close_connection = True  # nor read another request
            _detach(serving, sock, remote, identity, environ.get("PATH_INFO", ""), environ.get(EXPIRES_KEY),
                    environ.get(LOGIN_SESSION_KEY))
            return Response(status=204)

        sock = environ.get("snorky.socket") or environ.get("gunicorn.socket")
        if sock is None:
            try:  # a bad handshake gevent-websocket left to us, or under a server without sockets
                accept_handshake(environ)
            except HandshakeError as exc:
                return _bad_handshake(remote, exc)
            _no_raw_socket(environ)
            return Response(
                "snorky_sync: no raw socket in this server; run under gunicorn -k gevent, "
                "the geventwebsocket worker, or snorky_sync.serve()\n", status=500)
        identity, refusal = check_access(opts, environ)
        if refusal is not None:
            _warn.info("refused", "refused handshake from %s: %s %s", remote, refusal.status,
                       printable(refusal.reason))
            counters["handshakes_refused"] += 1
            headers = {"Retry-After": "5"} if refusal.status == 503 else None
            return Response(refusal.reason + "\n", status=refusal.status, mimetype="text/plain",
                            headers=headers)
        try:
            answer = accept_handshake(environ)
        except HandshakeError as exc:
            return _bad_handshake(remote, exc)
        try:  # one send: gevent's sendall() asks the kernel for SO_SNDBUF first, every time
            try:
                sent = sock._sock.send(answer)
            except BlockingIOError:
                sent = 0
            if sent < len(answer):
                sock.sendall(answer[sent:])
        except OSError:
            return _Hijacked()
        _detach(serving, sock, remote, identity, environ.get("PATH_INFO", ""), environ.get(EXPIRES_KEY),
                    environ.get(LOGIN_SESSION_KEY))
        return _Hijacked()

    return snorky_websocket


def _bad_handshake(remote: str, exc: HandshakeError) -> Response:
    counters["handshakes_failed"] += 1
    _warn.info("bad-handshake", "bad handshake from %s: %s", remote, printable(exc.reason))
    return Response(exc.reason + "\n", status=exc.status, mimetype="text/plain", headers=exc.headers)


_once = RateLimitedLogger(log, burst=1, period=600.0)


def _no_raw_socket(environ: WSGIEnvironment) -> None:
    """The server gives the app no socket to take over (Flask's dev server,
    ``app.run()`` / ``flask run``, or another WSGI server): say how to serve."""
    counters["handshakes_no_raw_socket"] += 1
    software = str(environ.get("SERVER_SOFTWARE", ""))
    which = ("Flask's development server (app.run() / flask run)" if "werkzeug" in software.lower()
             else f"this server ({printable(software, 60) or 'unknown'})")
    _once.error("no-raw-socket",
                "WebSocket %s answered 500: %s gives the app no raw socket, so it cannot serve "
                "WebSockets. Serve the app with snorky_sync instead: `python -m snorky_sync serve "
                "module:app`, `snorky_sync.serve(app)`, or `gunicorn -k gevent module:app` "
                "(see docs/deployment.md)", printable(environ.get("PATH_INFO", "")), which)


def refuse_adopted(adopted: Any, remote: str, refusal: Reject, code: int = 1008) -> Response:
    """Refuse a WebSocket gevent-websocket already answered 101 (``adopted``, its
    ``wsgi.websocket``): a close frame, then no more from gevent-websocket on it."""
    refuse_after_upgrade(adopted.handler.socket, remote, refusal, code)
    adopted.closed = True  # gevent-websocket must not write its own close
    adopted.handler.close_connection = True  # nor read another request
    return Response(status=204)


def refuse_after_upgrade(sock: socket.socket, remote: str, refusal: Reject, code: int = 1008) -> None:
    _warn.info("refused", "refused connection from %s after upgrade: %s", remote, printable(refusal.reason))
    counters["handshakes_refused"] += 1
    try:
        sock.sendall(close_frame(code, refusal.reason))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _detach(serving: tuple[Any, ...], sock: socket.socket, remote: str, identity: Any, path: str = "",
            expires: float | None = None, login_session: str | None = None) -> None:
    """Take the descriptor over from the server and start the connection, parked.

    The socket object the server knows is detached (gevent's ``detach()``:
    it keeps no descriptor, so the server's own clean-up, which may read or
    close it, touches nothing) and the descriptor is wrapped anew.  The
    connection is set up here and parked (:mod:`.reader`): it gets a greenlet
    when its first frame arrives.  The server's request greenlet then returns
    at once and frees everything it held for the HTTP request (Flask request
    context, environ, buffered reader, parser, a deep stack): an idle
    connection keeps only its socket, its Client and its read state.
    """
    family, type_, proto = sock.family, sock.type, sock.proto
    try:
        fd = sock.detach()
    except OSError:
        return
    _start(serving, _socket_class(family, type_, proto, fileno=fd), remote, identity, path, expires,
           login_session)


def _close_info(reader: Reader) -> str:
    """How a connection ended, for its DEBUG line: the close code, and who closed."""
    proto = reader.proto
    received = getattr(proto, "close_rcvd", None)
    sent = getattr(proto, "close_sent", None)
    # websockets answers a peer's close itself (close_sent then too)
    by_server = reader.client.is_closing or (sent is not None and received is None)
    close = received or sent
    if close is None:
        return "code 1006 (no close frame: reset or dropped)" + (" after the server's close"
                                                                  if by_server else "")
    reason = f" {printable(close.reason, 60)}" if close.reason else ""
    return f"code {close.code}{reason} (closed by the {'server' if by_server else 'peer'})"


def _start(serving: tuple[Any, ...], sock: socket.socket, remote: str, identity: Any, path: str = "",
           expires: float | None = None, login_session: str | None = None) -> None:
    """Set up one connection (Client, counts, the services' ``client_connected``) and park it.
    With ``expires`` (its token's, a ``time.time()``), it is closed with 4001 then;
    ``login_session``: the login session it was opened with (``Snorky.logout``)."""
    registry, opts, pinger, client_class, process, expiries = serving
    try:  # writes are already batched per connection: Nagle would only add delay
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (the embedded server left it on)
    except OSError:
        pass  # not TCP
    if opts.socket_sndbuf:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, opts.socket_sndbuf)
        except OSError:
            pass
    client = client_class(sock, remote, identity, opts.max_queue_frames, opts.max_queue_bytes,
                          write_timeout=opts.write_timeout, budget=opts.outbound)
    client.login_session = login_session
    connections = opts.connections
    ident_key = connections.track(client)
    pinger.add(client)

    def end(reader: Reader) -> None:
        """The connection is over: the services forget it, what is queued goes
        out, the socket is closed, all within ``close_timeout``.  It counts
        against the connection limits until its socket is closed."""
        deadline = time.monotonic() + opts.close_timeout
        pinger.discard(client)
        if expires is not None:
            expiries.discard(client)
        try:
            registry.client_disconnected(client)
        finally:
            try:
                client.flush(opts.close_timeout)
                client.mark_closed()
                _linger_close(sock, deadline - time.monotonic())
            finally:
                connections.untrack(client, ident_key)
                if log.isEnabledFor(logging.DEBUG):
                    _open_close.debug("close", "WebSocket #%d from %s closed: %s", client.id,
                                      printable(remote), _close_info(reader))

    if log.isEnabledFor(logging.DEBUG):
        _open_close.debug("open", "WebSocket #%d open from %s at %s%s", client.id, printable(remote),
                          printable(path, 100),
                          "" if identity is None else f" as {printable(wire.encode(identity), 100)}")
    reader = Reader(client, sock, process, end, opts.max_frame_size, opts.recv_size,
                    InputBudget(opts.rate_limit, opts.rate_burst, opts.byte_rate, opts.byte_burst))
    try:
        registry.client_connected(client)
    except Exception:  # the registry logs each service's failure; this is anything else
        log.exception("connection %s failed", remote)
        end(reader)
        return
    if expires is not None:
        expiries.set(client, expires)
    reader.park()


def _linger_close(sock: socket.socket, timeout: float, limit: int = 1 << 20) -> None:
    """Half-close, then discard what the peer still sends until it closes, then
    close: at most ``timeout`` seconds in all and ``limit`` bytes.

    Closing a socket with unread input makes the kernel send RST, which can
    destroy the close frame we just wrote before the peer reads it.  The
    deadline is for the whole drain, not per read: a peer trickling a byte
    now and then must not hold the socket (and escape the connection limit).
    """
    deadline = time.monotonic() + timeout
    try:
        sock.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


# the process's connections live in .connections; these names stay importable here
live_clients = _connections.live_clients
close_all = _connections.close_all

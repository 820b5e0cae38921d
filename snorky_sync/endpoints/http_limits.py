"""Deadlines and a size limit on every HTTP connection of gevent's pywsgi servers.

gevent's pywsgi reads a request with no deadline and up to 100 header lines
of 64 KiB each: one stalled request held 6.2 MB, and trickled requests held
their sockets until descriptors ran out (issue #21).  :class:`LimitedHandler`
gives a pywsgi handler what nginx (``client_header_timeout``,
``large_client_header_buffers``, ``keepalive_timeout``,
``client_body_timeout``, ``send_timeout``) and Node (``headersTimeout``,
``keepAliveTimeout``, ``requestTimeout``) have, from :class:`HTTPLimits`:

* ``header_timeout``: the request line and headers must have arrived this
  long after the connection was accepted (for a kept-alive connection's next
  request: after its first byte).  A started request is answered ``408`` and
  closed; a connection that sent nothing is closed.
* ``max_header_size``: request line + headers.  Larger: ``431`` and close,
  having read at most that many bytes of it (plus one read).
* ``keepalive_timeout``: how long a connection may wait, idle, between
  requests; then it is closed without a word.
* ``body_timeout``: the request body (what the application reads and what
  pywsgi discards after the response) must have arrived this long after the
  headers.  Past it a read raises :class:`BodyTimeout` (a 408 for Flask, an
  ``OSError`` for anything else) and the connection is closed.
* ``write_timeout``: each write of a response (one ``sendall``) must finish
  within it; then the connection is closed.

Every read goes through one :class:`DeadlineReader` under pywsgi's buffered
``rfile``, whose deadline moves from phase to phase: no timer per request,
one socket-timeout assignment per read.  0 turns a deadline off.

Where it applies:

* the embedded server (:func:`snorky_sync.serve`): ``SnorkyWSGIHandler`` is a
  :class:`LimitedHandler`, with the limits of the served app's settings;
* ``gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker``:
  gunicorn serves with gevent-websocket's ``WebSocketHandler``, a pywsgi
  handler.  The command line names that worker, so no subclass of ours can
  be put in its place; instead :func:`install_geventwebsocket` (called when a
  :class:`~snorky_sync.Snorky` extension is created, i.e. when the app is
  loaded, before the worker starts serving) sets the same methods on that
  class.  It checks first that each method it replaces is still pywsgi's own
  (gevent-websocket 0.10 overrides none of them) and raises ``RuntimeError``
  otherwise, so an incompatible gevent-websocket stops the app at start
  rather than serving without limits;
* ``gunicorn -k gevent`` parses requests itself: its ``keepalive`` bounds the
  wait for a whole request head (gunicorn.conf.py sets it to the smaller of
  ``SNORKY_HEADER_TIMEOUT`` and ``SNORKY_KEEPALIVE_TIMEOUT``) and its
  ``limit_request_*`` settings bound the head (100 fields of 8190 bytes: 431).
  It reads a body with no deadline, so the app's ``wsgi.input`` gets one
  (:func:`with_body_deadline`, installed by the Snorky extension; a no-op
  where a :class:`DeadlineReader` already bounds the reads).
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import gevent
from gevent import pywsgi
from werkzeug.exceptions import RequestTimeout

from ..http_headers import HeaderTooLarge, read_headers
from ..logs import RateLimitedLogger, printable
from ..metrics import counters
from . import request_socket

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HTTPLimits", "LimitedHandler", "DeadlineReader", "BodyTimeout", "apply_limits",
           "install_geventwebsocket", "with_body_deadline"]

log = logging.getLogger("snorky_sync.http")
_warn = RateLimitedLogger(log)
_monotonic = time.monotonic
_BASE = pywsgi.WSGIHandler

_RESPONSES = {
    408: b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    431: (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
          b"Content-Type: text/plain\r\nContent-Length: 32\r\n\r\nRequest header fields too large\n"),
}

# what a read past the deadline does, by phase
_IDLE, _HEAD, _BODY = 0, 1, 2


@dataclass(frozen=True)
class HTTPLimits:
    """Deadlines (seconds; 0: off) and the header size limit (bytes; 0: pywsgi's own)."""

    header_timeout: float = 10.0
    max_header_size: int = 64 * 1024
    keepalive_timeout: float = 5.0
    body_timeout: float = 60.0
    write_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Any) -> HTTPLimits:
        """From a :class:`~snorky_sync.settings.Settings`."""
        return cls(header_timeout=settings.header_timeout, max_header_size=settings.max_header_size,
                   keepalive_timeout=settings.keepalive_timeout, body_timeout=settings.body_timeout,
                   write_timeout=settings.write_timeout)

    def strictest(self, other: HTTPLimits) -> HTTPLimits:
        """Each limit the stricter of the two (0, off, is the loosest)."""
        def pick(a: Any, b: Any) -> Any:  # each field: an int or a float
            return max(a, b) if not (a and b) else min(a, b)
        return HTTPLimits(**{f.name: pick(getattr(self, f.name), getattr(other, f.name))
                             for f in dataclasses.fields(self)})


class BodyTimeout(RequestTimeout, TimeoutError):
    """A request body did not arrive within ``body_timeout``.

    A werkzeug ``RequestTimeout`` (Flask answers 408, no traceback) and an
    ``OSError`` (pywsgi's discarding of the unread body swallows it, other
    code sees a failed read)."""

    description = "The request body did not arrive in time."


class _Refuse(BaseException):
    """Ends the request with an error answer and a close.  A BaseException:
    pywsgi turns an ``Exception`` while reading a request into a 400."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class DeadlineReader(io.RawIOBase):
    """The connection's socket as the raw stream under pywsgi's ``rfile``:
    every read ends at :attr:`deadline` (monotonic seconds)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        # named as in socket.SocketIO: code that digs the socket out of
        # ``environ['wsgi.input'].rfile.raw`` (SockJS under gevent-websocket) finds it
        self._sock = sock
        self.deadline = math.inf
        self.phase = _HEAD
        self.expired = False
        self.requests = 0  # requests begun on this connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._sock
        left = self.deadline - _monotonic()
        if left > 0:
            before = sock.timeout
            sock.settimeout(None if left == math.inf else left)  # gevent's: an attribute, no syscall
            try:
                got: int = sock.recv_into(buffer)
                return got
            except TimeoutError:
                pass
            finally:
                sock.settimeout(before)
        self.expired = True
        if self.phase == _HEAD:
            raise _Refuse(408)
        if self.phase == _BODY:
            raise BodyTimeout()
        return 0  # idle: as if the peer had closed


def _deadline(seconds: float) -> float:
    return _monotonic() + seconds if seconds > 0 else math.inf


def _limits(handler: Any) -> HTTPLimits:
    limits: HTTPLimits = getattr(handler.server, "snorky_http_limits", None) or handler.snorky_http_limits
    return limits


def _remote(handler: Any) -> str:
    address = handler.client_address
    return printable(address[0] if isinstance(address, tuple) else address)


class LimitedHandler(pywsgi.WSGIHandler):  # type: ignore[misc]  # gevent has no type hints
    """pywsgi's handler with :class:`HTTPLimits` (the server's
    ``snorky_http_limits``, else the class's).

    Its methods call pywsgi's by name, not through ``super()``: the same
    functions are set on gevent-websocket's handler (:func:`apply_limits`).
    """

    snorky_http_limits = HTTPLimits()
    rfile: Any  # pywsgi's (socket.makefile), then ours (io.BufferedReader over a DeadlineReader)

    def handle(self) -> None:
        limits = _limits(self)
        raw = DeadlineReader(self.socket)
        raw.deadline = _deadline(limits.header_timeout)  # the first request counts from the accept
        self.rfile.close()  # pywsgi's own (socket.makefile), unread
        self.rfile = io.BufferedReader(raw)
        self._snorky_raw = raw
        self.socket.settimeout(limits.write_timeout or None)  # every sendall of the response
        try:
            _BASE.handle(self)
        except ConnectionError as exc:
            # pywsgi's answer to a bad request (400, 414) written to a peer that
            # sent its garbage and left: a traceback per connection, before
            _warn.debug("peer-gone", "%s: connection gone before pywsgi's error answer (%s)",
                        _remote(self), printable(exc.strerror or type(exc).__name__))

    def handle_one_request(self) -> Any:
        raw = getattr(self, "_snorky_raw", None)
        if raw is None or self.rfile.closed:  # not set up by our handle(): pywsgi's as it is
            return _BASE.handle_one_request(self)
        limits = _limits(self)
        if raw.requests:  # kept alive: wait for the next request at most keepalive_timeout
            raw.deadline = _deadline(limits.keepalive_timeout)
        raw.phase = _IDLE
        try:
            if not self.rfile.peek(1):
                return None  # closed by the peer, or idle past its deadline
        except OSError:
            return None
        if raw.requests:
            raw.deadline = _deadline(limits.header_timeout)
        raw.requests += 1
        raw.phase = _HEAD
        try:
            result = _BASE.handle_one_request(self)
        except _Refuse as refusal:
            status = refusal.status
            if status == 408:
                counters["http_header_timeouts"] += 1
                _warn.info("http-408", "closing %s: request head not received within %ss (408)",
                           _remote(self), limits.header_timeout)
            else:
                counters["http_headers_too_large"] += 1
                _warn.info("http-431", "closing %s: request head larger than %d bytes (431)",
                           _remote(self), limits.max_header_size)
            return str(status), _RESPONSES[status]
        if raw.expired:  # the body's deadline passed (the application saw BodyTimeout)
            counters["http_body_timeouts"] += 1
            _warn.info("http-body", "closing %s: request body not received within %ss",
                       _remote(self), limits.body_timeout)
            return None
        return result

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        limit = _limits(self).max_header_size
        if not limit:
            return read_headers(fp, *args)
        try:
            return read_headers(fp, *args, limit=limit - len(self.requestline or ""))
        except HeaderTooLarge:
            raise _Refuse(431) from None

    def read_request(self, raw_requestline: bytes) -> Any:
        result = _BASE.read_request(self, raw_requestline)
        raw = getattr(self, "_snorky_raw", None)
        if raw is not None:  # the head is in: the body has its own deadline
            raw.deadline = _deadline(_limits(self).body_timeout)
            raw.phase = _BODY
        return result

    def handle_error(self, t: type[BaseException], v: BaseException, tb: TracebackType | None) -> None:
        if isinstance(v, TimeoutError) and not isinstance(v, BodyTimeout):
            # a response write that the peer did not take within write_timeout
            counters["http_write_timeouts"] += 1
            _warn.info("http-write", "closing %s: response not taken within %ss",
                       _remote(self), _limits(self).write_timeout)
            self.close_connection = True
            return
        _BASE.handle_error(self, t, v, tb)

    def _handle_client_error(self, ex: BaseException) -> Any:
        # the peer reset or closed the connection while its request head was
        # being read (a closed tab, a dropped keep-alive): DEBUG, and no 400
        # written to a socket that is gone (pywsgi printed a traceback for
        # the read, then another for the failed write)
        if isinstance(ex, ConnectionError):
            _warn.debug("peer-reset", "%s: connection reset by the peer during a request (%s)",
                        _remote(self), printable(ex.strerror or type(ex).__name__))
            self.close_connection = True
            return None
        return _BASE._handle_client_error(self, ex)


_METHODS = ("handle", "handle_one_request", "MessageClass", "read_request", "handle_error",
            "_handle_client_error")


def apply_limits(cls: type, limits: HTTPLimits) -> None:
    """Give the pywsgi handler class ``cls`` (not a :class:`LimitedHandler`)
    the limits, in place.  Raises ``RuntimeError`` if ``cls`` is not a pywsgi
    handler or overrides a method this replaces; applying it again keeps the
    strictest of the limits given (logged)."""
    current = cls.__dict__.get("snorky_http_limits")
    if current is not None:
        if current != limits:
            merged = current.strictest(limits)
            log.warning("%s: HTTP limits %s and %s given by two apps of this process; "
                        "serving with the stricter ones: %s", cls.__qualname__, current, limits, merged)
            cls.snorky_http_limits = merged  # type: ignore[attr-defined]
        return
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not issubclass(cls, _BASE):
        raise RuntimeError(f"snorky_sync cannot apply its HTTP limits to {name}: "
                           f"not a gevent.pywsgi.WSGIHandler")
    changed = [m for m in _METHODS if getattr(cls, m) is not getattr(_BASE, m)]
    if changed:
        raise RuntimeError(
            f"snorky_sync cannot apply its HTTP header/body deadlines and header size limit to "
            f"{name}: it overrides {', '.join(changed)} of gevent's pywsgi (an incompatible "
            f"version?). Use gevent-websocket 0.10, or serve with `gunicorn -k gevent`.")
    for m in _METHODS:
        setattr(cls, m, LimitedHandler.__dict__[m])
    cls.snorky_http_limits = limits  # type: ignore[attr-defined]


def install_geventwebsocket(limits: HTTPLimits) -> None:
    """Apply ``limits`` to gevent-websocket's ``WebSocketHandler`` (the handler
    of its gunicorn worker), if gevent-websocket is installed."""
    try:
        from geventwebsocket.handler import WebSocketHandler
    except ImportError:  # pragma: no cover - a dependency; without it nothing serves with it
        return
    apply_limits(WebSocketHandler, limits)
    from .handshake import guard_geventwebsocket
    guard_geventwebsocket(WebSocketHandler)  # bad handshakes answered by the app, as elsewhere


class _TimedInput:
    """A ``wsgi.input`` that counts what the application read, and whose
    reads end at a deadline (monotonic seconds; ``math.inf``: none)."""

    def __init__(self, stream: Any, deadline: float, remote: str) -> None:
        self._stream = stream
        self._deadline = deadline
        self._remote = remote
        self._expired = False
        self.consumed = 0   # bytes the application read
        self.ended = False  # a read came back short: the body is over

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            if self._deadline == math.inf:
                return method(*args)
            left = self._deadline - _monotonic()
            if left <= 0:
                raise BodyTimeout()
            with gevent.Timeout(left, BodyTimeout):
                return method(*args)
        except BodyTimeout:
            if not self._expired:
                self._expired = True
                counters["http_body_timeouts"] += 1
                _warn.info("http-body", "%s: request body not received within its deadline (408)",
                           printable(self._remote))
            raise

    def _count(self, data: bytes, asked: int | None = None) -> bytes:
        self.consumed += len(data)
        if not data or (asked is not None and asked >= 0 and len(data) < asked):
            self.ended = True
        return data

    def read(self, *args: Any) -> bytes:
        return self._count(self._timed(self._stream.read, *args), args[0] if args else -1)

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._timed(self._stream.readline, *args)
        self.consumed += len(line)
        if not line:
            self.ended = True
        return line

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._timed(self._stream.readlines, *args)
        self.consumed += sum(len(x) for x in lines)
        self.ended = True
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _bounded(stream: Any) -> bool:
    """Is ``stream`` pywsgi's input over a :class:`DeadlineReader` (already bounded)?"""
    return isinstance(getattr(getattr(stream, "rfile", None), "raw", None), DeadlineReader)


#: a request body left unread beyond this many bytes closes its connection
#: (servers would read and discard the rest, in Python, to keep it alive)
UNREAD_LIMIT = 64 * 1024


class _DropUnread:
    """The response iterable of a request with a big body; once the response
    is written (``close()``), a body left unread beyond :data:`UNREAD_LIMIT`
    closes the connection instead of being read and thrown away."""

    def __init__(self, result: Iterable[bytes], environ: WSGIEnvironment, counted: _TimedInput, length: int | None) -> None:
        self._result = result
        self._environ = environ
        self._counted = counted
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            counted = self._counted
            unread: int | None
            if self._length is not None:
                unread = self._length - counted.consumed
            else:  # chunked: unknown, unless the application read to its end
                unread = 0 if counted.ended else None
            if unread is None or unread > UNREAD_LIMIT:
                _drop_connection(self._environ, counted, unread)


#: after a response that left a big body unread: how long and how much of the
#: rest is still taken in (at the kernel's speed, thrown away) so that a client
#: still sending gets its answer rather than a reset (nginx's lingering close)
LINGER_TIME = 2.0
LINGER_BYTES = 16 * 1024 * 1024
_linger_buffer = bytearray(256 * 1024)  # written into, never read: one per process


def _linger(sock: socket.socket, left: int) -> None:
    deadline = _monotonic() + LINGER_TIME
    before = sock.timeout
    try:
        while left > 0:
            wait = deadline - _monotonic()
            if wait <= 0:
                break
            sock.settimeout(wait)
            n = sock.recv_into(_linger_buffer, min(len(_linger_buffer), left))
            if not n:
                break
            left -= n
    except OSError:
        pass
    finally:
        try:
            sock.settimeout(before)
        except OSError:
            pass


def _drop_connection(environ: WSGIEnvironment, counted: _TimedInput, unread: int | None) -> None:
    """No more requests on this connection and its unread input is not parsed:
    what the client still sends is taken in for a moment (:data:`LINGER_TIME`,
    :data:`LINGER_BYTES`), then the socket is shut for reading, so that the
    server's own drain of the body (pywsgi, every gunicorn) sees the end of
    its input and closes the connection. That shutdown is what closes it on
    every server; the flags set before it only save the server's drain."""
    stream = counted._stream
    if hasattr(stream, "_discard"):  # pywsgi's Input: nothing left to discard
        stream.content_length = stream.position
        stream.chunked_input = False
    if hasattr(stream, "failed"):
        # gunicorn >= 27's Body: its parser closes without draining the rest;
        # gunicorn 23-26 have no such flag (their drain ends at the shutdown)
        stream.failed = True
    counters["http_unread_bodies_dropped"] += 1
    _warn.debug("http-unread", "%s: closing after a response that left its request body unread "
                "(%d bytes read)", printable(counted._remote), counted.consumed)
    sock = request_socket(environ)
    if sock is not None:
        _linger(sock, LINGER_BYTES if unread is None else min(unread, LINGER_BYTES))
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def with_body_deadline(wsgi_app: WSGIApplication, timeout: float) -> WSGIApplication:
    """``wsgi_app`` whose request bodies must arrive within ``timeout`` seconds
    of the call (:class:`BodyTimeout` beyond; 0: no deadline of ours), on
    servers that read without one (gunicorn's workers); and whose big request
    bodies, when the application leaves more than :data:`UNREAD_LIMIT` bytes
    of one unread (a 413, a 404), close the connection rather than being read
    and discarded by the server to keep it alive (gunicorn ignores an
    application's ``Connection: close``; pywsgi discards the body even then:
    ~0.16 s of CPU per 10 MiB, issue #21)."""
    if getattr(wsgi_app, "snorky_body_timeout", None) is not None:
        return wsgi_app

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is None:
            return wsgi_app(environ, start_response)
        bounded = _bounded(stream)
        length_text = environ.get("CONTENT_LENGTH") or ""
        length = int(length_text) if length_text.isdigit() else None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        big = chunked or (length is not None and length > UNREAD_LIMIT)
        if bounded or timeout <= 0:
            if not big:
                return wsgi_app(environ, start_response)
            deadline = math.inf
        else:
            deadline = _monotonic() + timeout
        counted = _TimedInput(stream, deadline, environ.get("REMOTE_ADDR", "-"))
        environ["wsgi.input"] = counted
        result = wsgi_app(environ, start_response)
        if not big:
            return result
        return _DropUnread(result, environ, counted, None if chunked else length)

    app.snorky_body_timeout = timeout  # type: ignore[attr-defined]
    return app

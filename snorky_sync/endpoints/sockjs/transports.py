"""The HTTP transports: receive requests as WSGI response iterators, and sends.

A receive request (``xhr``, ``xhr_streaming``, ``eventsource``, ``htmlfile``,
``jsonp``) is a :class:`LocalReceiver` and a generator the WSGI server
iterates: every chunk it yields is written by the server (chunked on HTTP/1.1)
in the request's own greenlet, so the embedded server and both gunicorn
worker classes stream alike, and a slow reader only holds its own greenlet.
While it waits, a read watcher on the request's socket notices a client
that went away (the protocol then closes the session with 1002).  A chunk
the server cannot write within ``write_timeout`` seconds ends the response:
the write fails as if the client had gone (EPIPE), the server closes the
socket and the greenlet ends, whether the session still lives or was
dropped as a slow consumer meanwhile (``write_stall_disconnects``).

A send body (``xhr_send``, ``jsonp_send``) goes through
:func:`process_body`: under the session's lock, after the byte rate's delay,
sized and parsed, each message held to the frame size, every message
counted by the session's :class:`~snorky_sync.endpoints.limits.InputBudget`.
"""
from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import gevent
import gevent.event

from ...logs import RateLimitedLogger, printable
from ...metrics import counters, transport_counters
from .. import request_socket
from ..limits import RATE_EXCEEDED
from . import protocol

if TYPE_CHECKING:  # pragma: no cover
    from .manager import SessionManager
    from .session import SockJSSession

__all__ = ["LocalReceiver", "stream", "process_body", "request_socket", "PIECE"]

log = logging.getLogger("snorky_sync.sockjs")
_warn = RateLimitedLogger(log)
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_monotonic = time.monotonic
_sleep = gevent.sleep
_Timeout = gevent.Timeout
#: the largest chunk written at once (a write timeout applies to each)
PIECE = 64 * 1024


class Receiver(Protocol):
    """Where a session's frames go: a receive request here, or one another process serves."""

    polling: bool  # a polling transport: one frame (batch) per request
    ready: bool    # waiting for frames (not writing the last ones)

    def deliver(self, frames: list[bytes], last: bool) -> None: ...


class Source(Protocol):
    """What a receive request reads from: a session of this process, or a relayed one."""

    def attach(self, receiver: Receiver) -> bool: ...
    def receiver_ready(self, receiver: Receiver) -> None: ...
    def detach(self, receiver: Receiver, aborted: bool) -> None: ...


class LocalReceiver:
    """A pending receive request of this process."""

    __slots__ = ("transport", "wrap", "polling", "ready", "out", "event", "done", "aborted",
                 "sent", "limit", "raw", "watcher", "timeout")

    def __init__(self, transport: str, wrap: Callable[[bytes], bytes], limit: int, sock: socket.socket | None,
                 timeout: float | None = None) -> None:
        self.transport = transport
        self.wrap = wrap
        self.polling = transport in protocol.POLLING
        self.ready = True
        self.out: list[bytes] = []
        self.event = gevent.event.Event()
        self.done = False
        self.aborted = False
        self.sent = 0
        self.limit = limit
        self.raw = getattr(sock, "_sock", None) if sock is not None else None
        self.watcher = None
        self.timeout = timeout  # relayed requests: give up when the owner goes silent

    def deliver(self, frames: list[bytes], last: bool) -> None:
        wrap = self.wrap
        self.out.extend([wrap(f) for f in frames])
        self.ready = False
        if last or self.polling:
            self.done = True
        self.event.set()

    def wait(self) -> None:
        raw = self.raw
        if raw is not None:
            if self.watcher is None:
                try:
                    self.watcher = gevent.get_hub().loop.io(raw.fileno(), 1)
                except (OSError, ValueError):
                    self.raw = None
            if self.watcher is not None:
                self.watcher.start(self._readable)
        try:
            if not self.event.wait(self.timeout):
                self.aborted = True
        finally:
            if self.watcher is not None:
                self.watcher.stop()
        self.event.clear()

    def _readable(self) -> None:
        if self.raw is None or self.watcher is None:
            return
        self.gone()

    def gone(self) -> bool:
        """Whether the client has closed this pending request's connection,
        looked at now (the read watcher only tells once the hub polls): a
        client that aborts a poll and at once sends the next one finds the
        session interrupted (1002), not held by the aborted request (2010).
        A gone request is aborted: its response ends."""
        raw = self.raw
        if raw is None:
            return self.aborted
        try:
            data = raw.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:  # the client sent something (pipelining): only a write can tell now
            if self.watcher is not None:
                self.watcher.stop()
            self.raw = None
            return False
        self.aborted = True
        self.event.set()
        return True

    def release(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None


class _WriteTimeout(BrokenPipeError):
    """Thrown into a request greenlet whose chunk was not written in time.

    EPIPE, so that every server treats it as a client that went away: the
    connection is closed quietly (no traceback per client in the log)."""


def stream(receiver: LocalReceiver, source: Source, prelude: bytes | None,
           write_timeout: float = 0.0) -> Iterator[bytes]:
    """The response body of a receive request attached to ``source`` (a
    session of this process, or a relayed one); each chunk must be written
    within ``write_timeout`` seconds (0: no limit)."""
    attached = completed = False
    writing = 0.0     # when the chunk the server is writing now was handed over
    timer = None
    try:
        if prelude:
            if write_timeout:
                timer = _Timeout.start_new(write_timeout, _WriteTimeout(errno.EPIPE, "write timed out"))
            writing = _monotonic()
            yield prelude
            writing = 0.0
            if timer is not None:
                timer.close()
        attached = source.attach(receiver)
        while True:
            if not receiver.out:
                receiver.wait()
                if receiver.aborted:
                    return
                if not receiver.out:
                    continue
            data = b"".join(receiver.out)
            receiver.out = []
            for at in range(0, len(data), PIECE):
                piece = data[at:at + PIECE] if len(data) > PIECE else data
                if write_timeout:
                    timer = _Timeout.start_new(write_timeout, _WriteTimeout(errno.EPIPE, "write timed out"))
                writing = _monotonic()
                yield piece
                writing = 0.0
                if timer is not None:
                    timer.close()
                receiver.sent += len(piece)
            if receiver.done or receiver.sent >= receiver.limit:
                completed = True
                return
            receiver.ready = True
            source.receiver_ready(receiver)
    finally:
        if timer is not None:
            timer.close()
        if writing and write_timeout and _monotonic() - writing >= write_timeout:
            counters["write_stall_disconnects"] += 1
            _warn.warning("sockjs-write-stall", "SockJS %s response: nothing written for %ss; "
                          "connection cut", printable(receiver.transport), write_timeout)
        receiver.release()
        if attached:
            source.detach(receiver, not completed)


def process_body(manager: SessionManager, session: SockJSSession, read: Callable[[], bytes | None],
                 form: bool = False) -> tuple[int, str]:
    """Process one send request's body for ``session``: ``(status, text)``.

    Under the session's lock (its sends are handled one at a time, in
    order): wait out the byte rate (the body is not read meanwhile), then
    ``read()`` it (None: over the size limit, 413), charge its bytes, take
    its ``d=`` field (``form``: a ``jsonp_send`` form), parse it, hold each
    message to the frame size (else the session closes with 1009, 413),
    charge its messages (over the rate the session closes with 1008 and
    none is processed), and hand them to the services.
    """
    opts = manager.opts
    process = manager.target.process_message_raw
    with session.inbound:
        if session.closing is not None:
            return 404, "Session not found."
        budget = session.budget
        delay = budget.delay()
        if delay > 0:
            counters["input_throttled"] += 1
            _sleep(delay)
            if session.closing is not None:
                return 404, "Session not found."
        body = read()
        if body is None:
            return 413, "Payload too large."
        budget.charge(0, len(body))
        try:
            if form:
                body = protocol.form_field(body)
            messages = protocol.decode_messages(body)
        except protocol.BodyError as exc:
            counters["frames_invalid"] += 1
            return 500, str(exc)
        if len(body) > opts.max_frame_size:  # else no message in it can be larger
            limit = opts.max_frame_size
            if any(len(m) > limit // 4 and len(m.encode("utf-8", "surrogatepass")) > limit
                   for m in messages):
                counters["frames_too_big"] += 1
                session.close(1009, "Message too big")
                return 413, "Payload too large."
        if not budget.charge(len(messages), 0):
            counters["rate_limited_disconnects"] += 1
            m = budget.messages
            _warn.warning("rate-limit", "closing SockJS session #%d of %s: more than %s messages/s "
                          "(burst %s)", session.id, printable(session.remote_address), m.rate, m.burst)
            session.close(1008, RATE_EXCEEDED)
            return 204, ""
        counters["frames_in"] += len(messages)
        transport_counters["messages_in", session.transport] += len(messages)
        for message in messages:
            process(session, message)
            if session.closing is not None:
                break
    return 204, ""

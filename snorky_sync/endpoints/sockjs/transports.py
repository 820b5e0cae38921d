"""The HTTP transports: receive requests as WSGI response iterators, and sends.

A receive request (``xhr``, ``xhr_streaming``, ``eventsource``, ``htmlfile``,
``jsonp``) is a :class:`LocalReceiver` and a generator the WSGI server
iterates: every chunk it yields is written by the server (chunked on HTTP/1.1)
in the request's own greenlet, so the embedded server and both gunicorn
worker classes stream alike, and a slow reader only holds its own greenlet.
While it waits, a read watcher on the request's socket notices a client
that went away (the protocol then closes the session with 1002).
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable

import gevent
import gevent.event

from ...metrics import counters, transport_counters
from . import protocol

__all__ = ["LocalReceiver", "stream", "process_messages", "request_socket"]

_MSG_PEEK = socket.MSG_PEEK
_monotonic = time.monotonic


def request_socket(environ):
    """The gevent socket under this request, if the server lets us see it."""
    for key in ("snorky.socket", "gunicorn.socket", "gunicorn.sock"):
        sock = environ.get(key)
        if sock is not None:
            return sock
    try:  # pywsgi handlers that do not expose it (gevent-websocket's)
        return environ["wsgi.input"].rfile.raw._sock
    except (KeyError, AttributeError):
        return None


class LocalReceiver:
    """A pending receive request of this process."""

    __slots__ = ("transport", "wrap", "polling", "ready", "out", "event", "done", "aborted",
                 "sent", "limit", "raw", "watcher", "timeout")

    def __init__(self, transport: str, wrap: Callable[[bytes], bytes], limit: int, sock,
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
        raw, watcher = self.raw, self.watcher
        if raw is None or watcher is None:
            return
        try:
            data = raw.recv(1, _MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:  # the client sent something (pipelining): only a write can tell now
            watcher.stop()
            self.raw = None
            return
        self.aborted = True
        self.event.set()

    def release(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None


def stream(receiver: LocalReceiver, source, prelude: bytes | None):
    """The response body of a receive request attached to ``source`` (a
    session of this process, or a relayed one)."""
    attached = completed = False
    try:
        if prelude:
            yield prelude
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
            yield data
            receiver.sent += len(data)
            if receiver.done or receiver.sent >= receiver.limit:
                completed = True
                return
            receiver.ready = True
            source.receiver_ready(receiver)
    finally:
        receiver.release()
        if attached:
            source.detach(receiver, not completed)


def process_messages(manager, session, messages: list[str]) -> None:
    """Hand a send request's messages to the services, in order, under the
    session's rate limit (as on WebSocket: excess closes with 1008)."""
    opts = manager.opts
    process = manager.target.process_message_raw
    with session.inbound:
        if session.closing is not None:
            return
        rate = opts.rate_limit
        if rate:
            now = _monotonic()
            session.tokens = min(opts.rate_burst, session.tokens + (now - session.rate_at) * rate)
            session.tokens -= len(messages)
            session.rate_at = now
            if session.tokens < 0:
                counters["rate_limited_disconnects"] += 1
                session.close(1008, "Rate limit exceeded")
                return
        counters["frames_in"] += len(messages)
        transport_counters["messages_in", session.transport] += len(messages)
        for message in messages:
            process(session, message)
            if session.closing is not None:
                break

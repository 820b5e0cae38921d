"""A SockJS session: a :class:`~snorky_sync.client.Client` whose socket is a
series of HTTP requests.

Services see a Client like any other: ``send_frame`` appends the same
encode-once WebSocket frame bytes to the same bounded queue (a slow consumer
is cut by the same limits), and the process's flusher hands the backlog,
turned into SockJS frames, to the *receiver* currently attached: the pending
polling or streaming request (:mod:`.transports`), or a request served by
another process (:mod:`.relay`).  With no receiver attached the queue just
waits; the next receive request takes it.

A receiver has ``polling`` (one frame per request), ``ready`` (waiting for
data) and ``deliver(frames, last)``; after writing it calls
:meth:`SockJSSession.receiver_ready`, so a client that reads slowly leaves
its frames in the session's queue, where the limits apply.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock

from ... import wire
from ...client import Client
from ...client_state import Lifecycle, Writing
from ...logs import printable
from ...metrics import counters, transport_counters
from ..limits import InputBudget
from . import protocol

if TYPE_CHECKING:  # pragma: no cover
    from .manager import SessionManager
    from .transports import Receiver

__all__ = ["SockJSSession", "Raw", "quoted"]

log = logging.getLogger("snorky_sync.sockjs")

_monotonic = time.monotonic
_frame_payload = wire.frame_payload
_message_frame = protocol.message_frame


class Raw(bytes):
    """A SockJS frame queued as it is (``h``, ``c[...]``), not a service message."""

    __slots__ = ()


# Fan-out queues one frame object to many sessions: quote it once.
_quoted: dict[bytes, bytes] = {}
_quoted_bytes = 0
_QUOTED_MAX = 8 * 1024 * 1024


def quoted(frame: bytes) -> bytes:
    """The SockJS (JSON string) form of a queued WebSocket frame's payload, cached."""
    global _quoted_bytes
    q = _quoted.get(frame)
    if q is None:
        q = protocol.quote(_frame_payload(frame))
        if len(frame) < 65536:
            if _quoted_bytes > _QUOTED_MAX:
                _quoted.clear()
                _quoted_bytes = 0
            _quoted[frame] = q
            _quoted_bytes += len(frame) + len(q)
    return q


def take_frames(queue: list[bytes], one: bool) -> tuple[list[bytes], int, int]:
    """SockJS frames from the head of ``queue``: consecutive service frames
    become one ``a[...]``, raw frames pass as they are.  With ``one``, only
    the first SockJS frame.  Returns (frames, items consumed, messages)."""
    out: list[bytes] = []
    msgs: list[bytes] = []
    used = n = 0
    for item in queue:
        if type(item) is Raw:
            if msgs:
                out.append(_message_frame(msgs))
                msgs = []
                if one:
                    break
            out.append(item)
            used += 1
            if one:
                break
        else:
            msgs.append(quoted(item))
            used += 1
            n += 1
    if msgs:
        out.append(_message_frame(msgs))
    return out, used, n

_IDLE, _PULLED = Writing.IDLE, Writing.PULLED


class SockJSSession(Client):
    """One SockJS session (every transport but WebSocket), as services see it.

    Extra attributes: ``sid`` (the key the session lives under: the
    client's session id and a digest of the credentials that opened it, see
    :func:`.binding.session_key`), ``transport`` (of the request that opened
    it, the metrics label).
    """

    __slots__ = ("sid", "manager", "transport", "receiver", "opened", "ended", "closing",
                 "detached_at", "inbound", "budget", "claim")

    def __init__(self, manager: SessionManager, sid: str, transport: str, remote: str, identity: Any) -> None:
        opts = manager.opts
        super().__init__(None, remote, identity, opts.max_queue_frames, opts.max_queue_bytes,
                         opts.write_timeout, opts.outbound)
        self.manager = manager
        self.sid = sid
        self.transport = transport
        self.receiver: Receiver | None = None
        self.opened = False        # "o" delivered
        self.ended = False         # services told (client_disconnected)
        self.closing: bytes | None = None  # the c[...] frame once closed
        self.detached_at = _monotonic()
        self.inbound = gevent.lock.Semaphore()  # one send request processed at a time, in order
        # messages (every one in a body, not bodies) and bytes, as on WebSocket
        self.budget = InputBudget(opts.rate_limit, opts.rate_burst, opts.byte_rate, opts.byte_burst)
        self.claim: str | None = None  # cluster ownership token (relay)

    def __repr__(self) -> str:
        return (f"<SockJSSession #{self.id} {self.transport} {self.remote_address} "
                f"identity={self.identity!r}>")

    # -- receivers -----------------------------------------------------------------
    def attach(self, receiver: Receiver) -> bool:
        """A receive request arrived: True if it is now the session's receiver.

        Otherwise it was answered (another receiver is attached: 2010; the
        session is closed and drained: its close frame) and must end.  An
        attached receiver whose client has gone (not yet noticed) is aborted
        first: the session closes with 1002 and this request gets that.
        """
        current = self.receiver
        if current is not None:
            gone = getattr(current, "gone", None)  # a relayed receiver cannot tell
            if gone is not None and gone():
                self.detach(current, True)
        if self.receiver is not None:
            receiver.deliver([protocol.close_frame(2010, "Another connection still open")], True)
            return False
        if self.closing is not None and self.opened and not self._queue:
            receiver.deliver([self.closing], True)
            return False
        self.receiver = receiver
        self.writing = _PULLED  # the receiver pulls when ready
        if not self.opened:
            self.opened = True
            receiver.deliver([protocol.OPEN], False)
        else:
            self.receiver_ready(receiver)
        return True

    def receiver_ready(self, receiver: Receiver) -> None:
        """The receiver wrote what it had and waits: hand it the backlog."""
        if receiver is not self.receiver:
            return
        if self._queue:
            self._deliver(receiver)
        else:
            self.writing = _IDLE  # the next frame is flushed to it

    def detach(self, receiver: Receiver, aborted: bool) -> None:
        """The request ended; ``aborted``: the client went away while it was pending."""
        if receiver is not self.receiver:
            return
        self.receiver = None
        self.writing = _PULLED  # frames wait for the next receiver
        self.detached_at = _monotonic()
        if aborted and self.closing is None:
            self._finish(1002, "Connection interrupted", drop=True)

    def heartbeat(self) -> None:
        r = self.receiver
        if r is not None and r.ready and not self._queue:
            r.deliver([protocol.HEARTBEAT], False)

    def _deliver(self, receiver: Receiver) -> None:
        q = self._queue
        frames, used, n = take_frames(q, receiver.polling)
        if used == len(q):
            self._queue = []
            self._queued_bytes = 0
        else:
            del q[:used]
            self._queued_bytes = sum(len(x) for x in q)
        self.writing = _PULLED  # until the receiver is ready again
        counters["frames_out"] += n
        transport_counters["messages_out", self.transport] += n
        last = self.closing is not None and not self._queue
        receiver.deliver(frames, last)

    # -- the Client writer side -------------------------------------------------------
    def _flush(self) -> None:
        r = self.receiver
        if r is None or not r.ready:
            self.writing = _PULLED  # the receiver pulls when it is ready
            return
        if self._queue:
            self._deliver(r)
        else:
            self.writing = _IDLE

    def flush(self, timeout: float | None = None) -> bool:
        return not self._queue

    def send_control(self, data: bytes) -> None:
        """Protocol bytes: SockJS has none for services to send."""

    # -- closing ------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "",
              after_flush: Callable[[], None] | None = None) -> None:
        """Close the session: ``c[code,"reason"]`` after what is queued."""
        self._finish(code, reason, drop=False)

    def _slow_consumer(self) -> None:
        counters["slow_consumer_disconnects"] += 1
        log.warning("slow consumer %s (SockJS session #%d, %s): outbound queue full "
                    "(%d frames, %d bytes); closing",
                    printable(self.remote_address), self.id, self.transport, len(self._queue),
                    self._queued_bytes, extra={"conn": self.id, "remote": self.remote_address})
        # found full while a service queues to it (a broadcast iterating its
        # subscribers, under its lock): the services forget it in a moment,
        # not from inside send_frame, as for a WebSocket cut by its reader
        self._finish(1013, "Slow consumer", drop=True, defer_end=True)

    def _abort(self) -> None:
        self._finish(1002, "Connection interrupted", drop=True, defer_end=True)

    def _finish(self, code: int, reason: str, drop: bool, defer_end: bool = False) -> None:
        if self.closing is not None:
            return
        self.closing = Raw(protocol.close_frame(code, reason))
        self.state = Lifecycle.CLOSING  # send_frame drops from now on
        if drop:
            self._queue = []
            self._queued_bytes = 0
        self._queue.append(self.closing)
        r = self.receiver
        if r is not None and r.ready:
            self._deliver(r)
        if defer_end:
            gevent.spawn(self.manager.ended, self)
        else:
            self.manager.ended(self)

    def destroy(self) -> None:
        """Forget the session (expired): tell services if not done yet."""
        if self.closing is None:
            self._finish(1000, "Session expired", drop=True)
        self.mark_closed()

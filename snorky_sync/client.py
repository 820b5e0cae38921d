"""Client: one connection as services see it.

A Client carries the connection's identity and remote address and owns a
bounded outbound queue (architecture.md rule 3):

* :meth:`Client.send_frame` only appends an already-encoded frame to a list
  and, the first time in a burst, puts the client on its flusher's dirty
  list; it never blocks and never encodes anything per recipient.
* The flusher (:mod:`snorky_sync.flusher`, one per hub) gives each dirty
  client its turn, :meth:`Client._flush`: one non-blocking ``send`` of its
  whole backlog.  No greenlet is spawned or switched to per client on this
  path.
* Only when the kernel's send buffer is full (a partial or refused write)
  does the client get a writer greenlet of its own, which finishes the job
  with ``sendall`` and keeps draining until the queue is empty, then exits.
* A client whose queue exceeds ``max_queue_frames`` frames or
  ``max_queue_bytes`` bytes is a slow consumer: its queue is dropped, the
  socket is shut down, the event is logged with its address and counted.
  Nobody else waits for it.  The budget is for the backlog *behind* the
  frame being written: a frame alone in an empty queue (one message larger
  than the budget, up to the largest message) is always accepted, so a client
  that reads gets it; what queues behind it must fit the budget.
* A writer whose socket accepts nothing for ``write_timeout`` seconds (the
  peer stopped reading) cuts the connection (``write_stall_disconnects``).
* The app's budget (:class:`~snorky_sync.outbound.OutboundBudget`,
  ``SNORKY_MAX_OUTBOUND_MEMORY``) caps the bytes owed to all its connections
  together: a keeper greenlet sums them twice a second and, above the budget,
  cuts the connections owed the most first until the total is back under 90%
  of it (``memory_budget_disconnects``).

The class knows nothing about Flask or the WebSocket handshake: endpoints
create it around a connected gevent socket; unit tests subclass it.
"""
from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent.socket import wait_write as _wait_write

from . import hub, wire
from .client_state import Lifecycle, Writing
from .flusher import FLUSH_MAX_WAIT, Flusher, send_to_all
from .logs import RateLimitedLogger
from .metrics import counters
from .outbound import DEFAULT as DEFAULT_BUDGET
from .outbound import OutboundBudget, default_memory_budget

__all__ = ["Client", "Lifecycle", "Writing", "close_frame", "PING_FRAME", "configure", "outbound_bytes",
           "default_memory_budget", "send_to_all", "FLUSH_MAX_WAIT"]

log = logging.getLogger("snorky_sync.client")
_warn = RateLimitedLogger(log)  # per-connection lines: at most 10 of a kind per 10 s

_ids = itertools.count(1)
_idle = hub.idle
_spawn = gevent.spawn


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame (opcode 8) with a status code and reason."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return b"\x88" + bytes((len(payload),)) + payload


PING_FRAME = b"\x89\x00"


# -- the memory budget (snorky_sync.outbound) ----------------------------------------
def configure(memory_budget: int | None = None, write_timeout: float | None = None) -> None:
    """Set the budget of clients made without an app (:data:`snorky_sync.outbound.DEFAULT`):
    bytes (0 turns it off) and the default write timeout.  An app's clients
    have their app's budget (``SNORKY_MAX_OUTBOUND_MEMORY``)."""
    if memory_budget is not None:
        DEFAULT_BUDGET.limit = int(memory_budget)
    if write_timeout is not None:
        DEFAULT_BUDGET.write_timeout = float(write_timeout)


def outbound_bytes() -> int:
    """Bytes owed now to the clients made without an app (queued and being written)."""
    return DEFAULT_BUDGET.owed_now()


_OPEN, _CLOSING, _CLOSED, _CUT = Lifecycle.OPEN, Lifecycle.CLOSING, Lifecycle.CLOSED, Lifecycle.CUT
_IDLE, _QUEUED, _WRITER = Writing.IDLE, Writing.QUEUED, Writing.WRITER
_GONE = (_CLOSED, _CUT)
_CLOSE_QUEUED = (_CLOSING, _CLOSED)


class _Stalled(OSError):
    """The peer accepted nothing for ``write_timeout`` seconds."""


class Client:
    """A connection, as services see it.

    Attributes: ``identity`` (any JSON value, None when anonymous),
    ``remote_address`` (text for logs), ``id`` (process-unique integer),
    ``login_session`` (the login session it was opened with, when its
    ``authenticate`` hook names one: ``Snorky.logout`` closes them), ``closed``; ``state`` (:class:`Lifecycle`) and ``writing``
    (:class:`Writing`) are the two state machines behind them.
    """

    __slots__ = (
        "id", "identity", "login_session", "remote_address", "state", "writing", "seen", "pinged", "_sock", "_raw",
        "_queue", "_queued_bytes", "_writer", "_max_frames", "_max_bytes",
        "_after_flush", "_inflight", "_write_timeout", "outbound", "flusher", "__weakref__",
    )

    def __init__(
        self,
        sock: socket.socket | None = None,
        remote_address: str = "-",
        identity: Any = None,
        max_queue_frames: int = 10000,
        max_queue_bytes: int = 1024 * 1024,
        write_timeout: float | None = None,
        budget: OutboundBudget | None = None,
        flusher: Flusher | None = None,
    ) -> None:
        self.id = next(_ids)
        self.identity = identity
        self.login_session: str | None = None
        self.remote_address = remote_address
        self.state = _OPEN
        self.writing = _IDLE
        self.seen = True      # set by the reader on input; the pinger clears it
        self.pinged = False
        self._sock = sock
        # gevent's underlying non-blocking socket, for the flusher's single send
        self._raw = getattr(sock, "_sock", None)
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._writer: gevent.Greenlet | None = None
        self._max_frames = max_queue_frames
        self._max_bytes = max_queue_bytes
        self._after_flush: Callable[[], None] | None = None
        self._inflight = 0        # bytes taken from the queue that the writer still has to write
        #: the budget of outbound bytes it counts against (its app's)
        self.outbound = outbound = DEFAULT_BUDGET if budget is None else budget
        self._write_timeout = outbound.write_timeout if write_timeout is None else write_timeout
        outbound.add(self)
        #: the flusher that writes it (its hub's)
        self.flusher = Flusher.of_hub() if flusher is None else flusher

    def __repr__(self) -> str:
        return f"<Client #{self.id} {self.remote_address} identity={self.identity!r}>"

    @property
    def closed(self) -> bool:
        """The connection is gone: nothing is sent any more."""
        return self.state in _GONE

    @property
    def is_closing(self) -> bool:
        """Our close frame is queued or sent: nothing more is sent but protocol bytes."""
        return self.state in _CLOSE_QUEUED

    # -- sending -----------------------------------------------------------
    def send_frame(self, frame: bytes) -> None:
        """Queue a complete frame (from :func:`snorky_sync.wire.encode_frame`)."""
        if self.state is not _OPEN:
            counters["frames_dropped_closed"] += 1
            return
        q = self._queue
        q.append(frame)
        self._queued_bytes += len(frame)
        if (len(q) > self._max_frames or self._queued_bytes > self._max_bytes) \
                and self._over_budget():
            self._slow_consumer()
            return
        if self.writing is _IDLE:
            self.flusher.schedule(self)

    def _over_budget(self) -> bool:
        """Past a limit: is the backlog behind the frame written next over it?"""
        q = self._queue
        if self._inflight or self._writer is not None:
            return True  # a frame is being written: everything queued is backlog
        # nothing in flight: the head of the queue goes out next, whatever its size
        return len(q) - 1 > self._max_frames or self._queued_bytes - len(q[0]) > self._max_bytes

    def owed_bytes(self) -> int:
        """Bytes queued for this connection or still being written to it."""
        return self._queued_bytes + self._inflight

    def send(self, msg: Any) -> None:
        """Encode and queue a whole message (Snorky 0.1's ``Client.send``: ``msg``
        is the JSON value sent, envelope included)."""
        self.send_frame(wire.frame_text(wire.encode(msg)))

    def send_control(self, data: bytes) -> None:
        """Queue protocol bytes (ping, pong, close echo) even while closing."""
        if self.closed:
            return
        self._queue.append(data)
        if self.writing is _IDLE:
            self.flusher.schedule(self)

    def queue_depth(self) -> int:
        """Frames waiting to be written."""
        return len(self._queue)

    def lagging(self) -> bool:
        """Its backlog is past half its queue budget (``max_queue_frames`` or
        ``max_queue_bytes``): a slow consumer on its way to being cut (the
        control service's ``info()`` counts them)."""
        return len(self._queue) * 2 > self._max_frames or self.owed_bytes() * 2 > self._max_bytes

    def _take(self) -> bytes:
        q = self._queue
        self._queue = []
        self._queued_bytes = 0
        counters["frames_out"] += len(q)
        data = q[0] if len(q) == 1 else b"".join(q)
        counters["bytes_out"] += len(data)
        return data

    def _flush(self) -> None:
        """The flusher's turn: one non-blocking send of the whole backlog."""
        if self.state in _GONE or self.writing is _WRITER:
            return
        if not self._queue:
            self.writing = _IDLE
            self._maybe_closed()
            return
        data = self._take()
        raw = self._raw
        counters["socket_writes"] += 1
        try:
            sent = raw.send(data) if raw is not None else 0
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            # a closed tab: routine, not news
            _warn.debug("write-failed", "write to %s failed: %s", self.remote_address, exc)
            self._abort()
            return
        if sent < len(data):  # kernel buffer full: a writer of its own finishes the job
            self._inflight = len(data) - sent
            self.writing = _WRITER
            self._writer = _spawn(self._write_rest, memoryview(data)[sent:])
            return
        self.writing = _IDLE
        self._maybe_closed()

    def _write_rest(self, rest: memoryview) -> None:
        try:
            self._write_all(rest)
            while True:
                _idle(FLUSH_MAX_WAIT)
                if not self._queue:
                    break
                self._write_all(memoryview(self._take()))
        except _Stalled:
            counters["write_stall_disconnects"] += 1
            _warn.warning("write-stalled", "write stalled %s (client #%d): no progress for %ss with %d bytes "
                        "unwritten and %d queued; disconnecting", self.remote_address, self.id,
                        self._write_timeout, self._inflight, self._queued_bytes,
                        extra={"conn": self.id, "remote": self.remote_address})
            self._abort()
        except OSError as exc:
            # a closed tab: routine, not news
            _warn.debug("write-failed", "write to %s failed: %s", self.remote_address, exc)
            self._abort()
        finally:
            self._writer = None
            self.writing = _IDLE
            self._inflight = 0
        self._maybe_closed()

    def _write_all(self, view: memoryview) -> None:
        """Write ``view`` whole; raise :class:`_Stalled` if the socket accepts
        nothing for ``write_timeout`` seconds."""
        raw = self._raw
        if raw is None:
            if self._sock is not None:
                self._sock.sendall(view)
            return
        fd = raw.fileno()
        timeout = self._write_timeout or None
        self._inflight = len(view)
        while view:
            try:
                n = raw.send(view)
            except BlockingIOError:
                n = 0
            if n:
                view = view[n:]
                self._inflight = len(view)
            else:
                _wait_write(fd, timeout, _Stalled)
        self._inflight = 0

    def _maybe_closed(self) -> None:
        if self.state is _CLOSING and not self._queue:
            after, self._after_flush = self._after_flush, None
            if after is not None:
                after()

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued now (waiting up to ``timeout``); True if all went out."""
        if self.writing is _QUEUED and self.state not in _GONE:
            self._flush()
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.join(timeout)
        return not self._queue and self._writer is None

    # -- closing -----------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "",
              after_flush: Callable[[], None] | None = None) -> None:
        """Send a close frame after everything already queued, then stop sending.

        ``after_flush`` runs once the close frame is written (default: shut
        down the write side); the endpoint then waits for the peer's close.
        """
        if self.state is not _OPEN:
            return
        self._queue.extend(self._close_frames(code, reason))
        self.state = _CLOSING
        self._after_flush = after_flush or self._shutdown_write
        if self.writing is _IDLE:
            self.flusher.schedule(self)

    def _close_frames(self, code: int, reason: str) -> list[bytes]:
        """What closing queues (a subclass speaking another framing adds its own)."""
        return [close_frame(code, reason)]

    def _shutdown_write(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _over_memory_budget(self, owed: int, limit: float) -> None:
        counters["memory_budget_disconnects"] += 1
        _warn.warning("memory-budget", "memory budget: %s (client #%d) is owed %d bytes and the app's "
                    "connections in this process more than %d (SNORKY_MAX_OUTBOUND_MEMORY); "
                    "disconnecting the largest first",
                    self.remote_address, self.id, owed, limit,
                    extra={"conn": self.id, "remote": self.remote_address})
        self._abort()

    def _slow_consumer(self) -> None:
        counters["slow_consumer_disconnects"] += 1
        _warn.warning(
            "slow-consumer", "slow consumer %s (client #%d): outbound queue full (%d frames, %d bytes); disconnecting",
            self.remote_address, self.id, len(self._queue), self._queued_bytes,
            extra={"conn": self.id, "remote": self.remote_address},
        )
        self._abort()

    def abort(self) -> None:
        """Cut the connection now (no close frame); the reader then cleans up."""
        self._abort()

    def _gone(self) -> None:
        self.state = _CLOSED if self.state is _CLOSING else _CUT

    def _abort(self) -> None:
        if self.state in _GONE:
            return
        self._gone()
        self._queue = []
        self._queued_bytes = 0
        self._inflight = 0
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def mark_closed(self) -> None:
        """The connection is gone: drop anything still queued."""
        if self.state not in _GONE:
            self._gone()
        self._queue = []
        self._queued_bytes = 0
        self._inflight = 0

"""Client: one connection as services see it.

A Client carries the connection's identity and remote address and owns a
bounded outbound queue (DESIGN.md rule 3):

* :meth:`Client.send_frame` only appends an already-encoded frame to a list
  and, the first time in a burst, puts the client on the process's dirty
  list; it never blocks and never encodes anything per recipient.
* One flusher greenlet per process waits for the hub to be idle (at most
  :data:`FLUSH_MAX_WAIT`: :func:`snorky_sync.hub.idle`) — so that all
  the work of the current burst has queued its frames — and then writes each
  dirty client's whole backlog with one non-blocking ``send``.  No greenlet is
  spawned or switched to per client on this path.  After a flush that
  wrote broadcasts to many connections (:data:`coalesce`) the next one waits
  a moment, so a stream of broadcasts costs one send per few frames per
  recipient.
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
* A process-wide budget (:func:`configure`, ``SNORKY_MAX_OUTBOUND_MEMORY``)
  caps the bytes owed to all connections together: a keeper greenlet sums
  them twice a second and, above the budget, cuts the connections owed the
  most first until the total is back under 90% of it
  (``memory_budget_disconnects``).

The class knows nothing about Flask or the WebSocket handshake: endpoints
create it around a connected gevent socket; unit tests subclass it.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
from gevent.socket import wait_write as _wait_write

from . import hub, wire
from .logs import RateLimitedLogger
from .metrics import counters

__all__ = ["Client", "close_frame", "PING_FRAME", "configure", "budget", "stats", "outbound_bytes",
           "default_memory_budget", "coalesce", "send_to_all"]

log = logging.getLogger("snorky_sync.client")
_warn = RateLimitedLogger(log)  # per-connection lines: at most 10 of a kind per 10 s

_ids = itertools.count(1)
_idle = hub.idle
#: the longest a flush waits for the hub to be idle (a hub that never is, under
#: load, must not hold replies back: snorky_sync.hub)
FLUSH_MAX_WAIT = 0.005
_spawn = gevent.spawn
_sleep = gevent.sleep


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame (opcode 8) with a status code and reason."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return b"\x88" + bytes((len(payload),)) + payload


PING_FRAME = b"\x89\x00"


# -- the process's memory budget ------------------------------------------------
def default_memory_budget(workers: int = 1) -> int:
    """A quarter of this machine's memory (or of the cgroup's limit, if lower),
    shared by ``workers`` processes; at least 64 MiB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 4 << 30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
        break
    return max(64 << 20, total // 4 // max(1, workers))


#: process-wide settings: ``memory_budget`` bytes owed to all connections
#: (0: none), ``write_timeout`` seconds a write may make no progress (0: none)
budget = {"memory_budget": default_memory_budget(), "write_timeout": 5.0, "interval": 0.5}
#: what the keeper saw on its last pass (bytes owed to all connections) and the peak
stats = {"outbound_bytes": 0, "outbound_bytes_peak": 0}
_all: weakref.WeakSet[Client] = weakref.WeakSet()
_keeper: gevent.Greenlet | None = None


def configure(memory_budget: int | None = None, write_timeout: float | None = None) -> None:
    """Set the process-wide budget (bytes; 0 turns it off) and the default write timeout."""
    if memory_budget is not None:
        budget["memory_budget"] = int(memory_budget)
    if write_timeout is not None:
        budget["write_timeout"] = float(write_timeout)


def outbound_bytes() -> int:
    """Bytes owed to this process's connections now (queued and being written)."""
    return sum(c.owed_bytes() for c in list(_all))


def _keep_budget() -> None:
    while True:
        gevent.sleep(budget["interval"])
        limit = budget["memory_budget"]
        owing = []
        total = 0
        for c in list(_all):
            owed = c.owed_bytes()
            if owed:
                total += owed
                owing.append((owed, c.id, c))
        stats["outbound_bytes"] = total
        if total > stats["outbound_bytes_peak"]:
            stats["outbound_bytes_peak"] = total
        if not limit or total <= limit:
            continue
        target = limit * 0.9
        owing.sort(reverse=True)
        for owed, _, c in owing:
            if total <= target:
                break
            total -= owed
            c._over_memory_budget(owed, limit)


# -- the process's flusher ------------------------------------------------------
#: when the frames a flush wrote include broadcasts to at least ``sends``
#: recipients in all, the next flush waits ``delay`` seconds: under a stream of
#: broadcasts (Cursors at mouse speed, a busy chat room) every recipient then
#: gets one send per few frames instead of one per frame.  Flushes of replies
#: and single sends only (however many connections) are never delayed: a
#: closed loop of RPC callers would wait on every round trip.
coalesce = {"sends": 32, "delay": 0.002}
_fanned = 0  # recipients of broadcasts (send_to_all) queued since the last flush
_dirty: list[Client] = []
_wake = gevent.event.Event()
_flusher: gevent.Greenlet | None = None


def _flush_loop() -> None:
    global _dirty, _fanned
    while True:
        _wake.wait()
        _wake.clear()
        _idle(FLUSH_MAX_WAIT)
        batch, _dirty = _dirty, []
        for client in batch:
            client._flush()
        fanned, _fanned = _fanned, 0
        if fanned >= coalesce["sends"]:
            # broadcasts to many: let the next ones gather for a moment, so
            # each recipient gets one send for several frames
            _sleep(coalesce["delay"])


def send_to_all(clients: Iterable[Client], frame: bytes) -> int:
    """Queue one encoded frame to many clients (a broadcast); returns how many.

    Counted for the flusher, which coalesces streams of broadcasts."""
    global _fanned
    n = 0
    for client in clients:
        client.send_frame(frame)
        n += 1
    _fanned += n
    return n


def _schedule(client: Client) -> None:
    global _flusher
    client._scheduled = True
    _dirty.append(client)
    _wake.set()
    if _flusher is None or _flusher.dead:
        _flusher = _spawn(_flush_loop)


class _Stalled(OSError):
    """The peer accepted nothing for ``write_timeout`` seconds."""


class Client:
    """A connection, as services see it.

    Attributes: ``identity`` (any JSON value, None when anonymous),
    ``remote_address`` (text for logs), ``id`` (process-unique integer),
    ``closed``.
    """

    __slots__ = (
        "id", "identity", "remote_address", "closed", "seen", "pinged", "_sock", "_raw",
        "_queue", "_queued_bytes", "_writer", "_scheduled", "_max_frames", "_max_bytes",
        "_closing", "_after_flush", "_inflight", "_write_timeout", "__weakref__",
    )

    def __init__(
        self,
        sock: socket.socket | None = None,
        remote_address: str = "-",
        identity: Any = None,
        max_queue_frames: int = 10000,
        max_queue_bytes: int = 1024 * 1024,
        write_timeout: float | None = None,
    ) -> None:
        global _keeper
        self.id = next(_ids)
        self.identity = identity
        self.remote_address = remote_address
        self.closed = False
        self.seen = True      # set by the reader on input; the pinger clears it
        self.pinged = False
        self._sock = sock
        # gevent's underlying non-blocking socket, for the flusher's single send
        self._raw = getattr(sock, "_sock", None)
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._writer: gevent.Greenlet | None = None
        self._scheduled = False   # on the dirty list or owned by a writer
        self._max_frames = max_queue_frames
        self._max_bytes = max_queue_bytes
        self._closing = False
        self._after_flush: Callable[[], None] | None = None
        self._inflight = 0        # bytes taken from the queue that the writer still has to write
        self._write_timeout = budget["write_timeout"] if write_timeout is None else write_timeout
        _all.add(self)
        if _keeper is None or _keeper.dead:
            _keeper = _spawn(_keep_budget)

    def __repr__(self) -> str:
        return f"<Client #{self.id} {self.remote_address} identity={self.identity!r}>"

    # -- sending -----------------------------------------------------------
    def send_frame(self, frame: bytes) -> None:
        """Queue a complete frame (from :func:`snorky_sync.wire.encode_frame`)."""
        if self.closed or self._closing:
            counters["frames_dropped_closed"] += 1
            return
        q = self._queue
        q.append(frame)
        self._queued_bytes += len(frame)
        if (len(q) > self._max_frames or self._queued_bytes > self._max_bytes) \
                and self._over_budget():
            self._slow_consumer()
            return
        if not self._scheduled:
            _schedule(self)

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

    def send_message(self, service: str, message: Any) -> None:
        """Encode and queue one envelope (for single-recipient messages)."""
        self.send_frame(wire.encode_frame(service, message))

    def send(self, msg: Any) -> None:
        """Encode and queue a whole message (Snorky 0.1's ``Client.send``: ``msg``
        is the JSON value sent, envelope included)."""
        self.send_frame(wire.frame_text(wire.encode(msg)))

    def send_control(self, data: bytes) -> None:
        """Queue protocol bytes (ping, pong, close echo) even while closing."""
        if self.closed:
            return
        self._queue.append(data)
        if not self._scheduled:
            _schedule(self)

    def queue_depth(self) -> int:
        """Frames waiting to be written."""
        return len(self._queue)

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
        if self.closed or self._writer is not None:
            return
        if not self._queue:
            self._scheduled = False
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
            self._writer = _spawn(self._write_rest, memoryview(data)[sent:])
            return
        self._scheduled = False
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
            self._scheduled = False
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
        if self._closing and not self.closed and not self._queue:
            after, self._after_flush = self._after_flush, None
            if after is not None:
                after()

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued now (waiting up to ``timeout``); True if all went out."""
        if self._scheduled and self._writer is None and not self.closed:
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
        if self.closed or self._closing:
            return
        self._queue.append(close_frame(code, reason))
        self._closing = True
        self._after_flush = after_flush or self._shutdown_write
        if not self._scheduled:
            _schedule(self)

    def _shutdown_write(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _over_memory_budget(self, owed: int, limit: float) -> None:
        counters["memory_budget_disconnects"] += 1
        _warn.warning("memory-budget", "memory budget: %s (client #%d) is owed %d bytes and the process's "
                    "connections more than %d; disconnecting the largest first",
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

    def _abort(self) -> None:
        if self.closed:
            return
        self.closed = True
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
        self.closed = True
        self._queue = []
        self._queued_bytes = 0
        self._inflight = 0

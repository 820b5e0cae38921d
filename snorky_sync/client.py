"""Client: one connection as services see it.

A Client carries the connection's identity and remote address and owns a
bounded outbound queue drained by a writer greenlet (DESIGN.md rule 3):

* :meth:`Client.send_frame` only appends an already-encoded frame to a list;
  it never blocks and never does per-recipient encoding work.
* The writer greenlet is started when the queue becomes non-empty.  It waits
  for ``gevent.idle()`` so that everything the current burst of work queued is
  written with one ``sendall``, then exits when the queue is empty, so an idle
  connection holds no writer greenlet at all.
* A client whose queue exceeds ``max_queue_frames`` frames or
  ``max_queue_bytes`` bytes is a slow consumer: its queue is dropped, the
  socket is shut down, the event is logged with its address and counted.
  Nobody else waits for it.

The class knows nothing about Flask or the WebSocket handshake: endpoints
create it around a connected socket; unit tests subclass it.
"""
from __future__ import annotations

import itertools
import logging
import socket
from typing import Any, Callable

import gevent

from . import wire
from .metrics import counters

__all__ = ["Client", "CLOSE_FRAME_NORMAL"]

log = logging.getLogger("snorky_sync.client")

_ids = itertools.count(1)
_idle = gevent.idle
_spawn = gevent.spawn


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame (opcode 8) with a status code and reason."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return b"\x88" + bytes((len(payload),)) + payload


CLOSE_FRAME_NORMAL = close_frame(1000)
PING_FRAME = b"\x89\x00"


class Client:
    """A connection, as services see it.

    Attributes: ``identity`` (any JSON value, None when anonymous),
    ``remote_address`` (text for logs), ``id`` (process-unique integer),
    ``closed``.
    """

    __slots__ = (
        "id", "identity", "remote_address", "closed", "_sock", "_queue",
        "_queued_bytes", "_writer", "_max_frames", "_max_bytes", "_closing",
        "_after_flush", "__weakref__",
    )

    def __init__(
        self,
        sock: socket.socket | None = None,
        remote_address: str = "-",
        identity: Any = None,
        max_queue_frames: int = 10000,
        max_queue_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.id = next(_ids)
        self.identity = identity
        self.remote_address = remote_address
        self.closed = False
        self._sock = sock
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._writer: gevent.Greenlet | None = None
        self._max_frames = max_queue_frames
        self._max_bytes = max_queue_bytes
        self._closing = False
        self._after_flush: Callable[[], None] | None = None

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
        if len(q) > self._max_frames or self._queued_bytes > self._max_bytes:
            self._slow_consumer()
            return
        if self._writer is None:
            self._writer = _spawn(self._write_loop)

    def send_message(self, service: str, message: Any) -> None:
        """Encode and queue one envelope (for single-recipient messages)."""
        self.send_frame(wire.encode_frame(service, message))

    def queue_depth(self) -> int:
        """Frames waiting to be written."""
        return len(self._queue)

    def _write_loop(self) -> None:
        sock = self._sock
        try:
            while True:
                _idle()
                q = self._queue
                if not q:
                    break
                self._queue = []
                self._queued_bytes = 0
                sock.sendall(q[0] if len(q) == 1 else b"".join(q))
                counters["frames_out"] += len(q)
        except OSError as exc:
            log.info("write to %s failed: %s", self.remote_address, exc)
            self._abort()
        finally:
            self._writer = None
        if self._closing and not self.closed and not self._queue:
            after, self._after_flush = self._after_flush, None
            if after is not None:
                after()

    # -- closing -----------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "",
              after_flush: Callable[[], None] | None = None) -> None:
        """Send a close frame after everything already queued, then stop sending.

        ``after_flush`` (set by the endpoint) runs once the close frame is
        written; the endpoint then waits for the peer's close or EOF.
        """
        if self.closed or self._closing:
            return
        self._queue.append(close_frame(code, reason))
        self._closing = True
        self._after_flush = after_flush or self._shutdown_write
        if self._writer is None:
            self._writer = _spawn(self._write_loop)

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _slow_consumer(self) -> None:
        counters["slow_consumer_disconnects"] += 1
        log.warning(
            "slow consumer %s (client #%d): outbound queue full (%d frames, %d bytes); disconnecting",
            self.remote_address, self.id, len(self._queue), self._queued_bytes,
        )
        self._abort()

    def _abort(self) -> None:
        """Drop the queue and cut the connection; the reader then cleans up."""
        if self.closed:
            return
        self.closed = True
        self._queue = []
        self._queued_bytes = 0
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- used by the endpoint ----------------------------------------------
    def send_control(self, data: bytes) -> None:
        """Queue protocol bytes (pong, close echo) even while closing."""
        if self.closed:
            return
        self._queue.append(data)
        if self._writer is None:
            self._writer = _spawn(self._write_loop)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is written (or ``timeout``); True if empty."""
        writer = self._writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.join(timeout)
        return not self._queue and self._writer is None

    def mark_closed(self) -> None:
        """The connection is gone: drop anything still queued."""
        self.closed = True
        self._queue = []
        self._queued_bytes = 0

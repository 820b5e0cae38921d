"""Reading one WebSocket connection: frames off the socket, to the registry.

A connection that talks has a greenlet of its own, which reads, parses and
hands every message to the registry in order (DESIGN.md rule 2).  A
connection that is quiet has none: it is *parked*, its socket's read watcher
armed with a callback that gives it a new greenlet when input arrives.  A
greenlet waiting on a socket costs ~6.8 KB here (its saved C stack and the
interpreter's frame stack chunk; measured with 20,000 of them), more than the
rest of an idle connection together, and most connections of a real-time
server are idle most of the time.

* A new connection starts parked: the request greenlet that answered the
  handshake arms the watcher and returns.
* A reader that finds nothing to read waits for input in its greenlet, so a
  busy connection never pays for a new greenlet per message.  A pass every
  :data:`PARK_AFTER` seconds parks the readers that were waiting, with no
  input, since the previous pass (idle for one to two passes).
* The read state (websockets' protocol, a fragmented message, the rate
  limiter's tokens) lives on the :class:`Reader`, so a parked connection
  resumes exactly where it was.  websockets' protocol object itself is made
  only when a frame needs it (see :func:`fast_frames`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from ..client import Client
from ..logs import RateLimitedLogger
from ..metrics import counters

try:  # websockets' C unmasking, as its own parser uses it
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - a websockets built without its C extension
    from websockets.utils import apply_mask as _apply_mask

__all__ = ["Reader", "fast_frames", "PARK_AFTER", "awake_readers"]

log = logging.getLogger("snorky_sync.websocket")
_warn = RateLimitedLogger(log)
# websockets logs "connection open" at INFO for every handshake; keep it out.
_protocol_log = logging.getLogger("snorky_sync.websocket.protocol")
_protocol_log.setLevel(logging.WARNING)

#: seconds between passes that park readers idle since the previous pass
PARK_AFTER = 1.0

_spawn = gevent.spawn
_monotonic = time.monotonic
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_awake: set[Reader] = set()  # readers that have a greenlet
_parker: gevent.Greenlet | None = None


class Park(BaseException):
    """Thrown into a reader waiting for input: park the connection."""


def fast_frames(data: bytes, max_size: int) -> tuple[list[bytes], int]:
    """The payloads of the complete, unfragmented, masked text/binary frames
    at the start of ``data`` (up to 64 KiB each), and where they end.

    The common case of a read — one or a few small messages — without
    websockets' generator-based parser (2.4 µs per frame here, against 0.2 µs
    for this loop; the unmasking is websockets' own C ``apply_mask``).  It
    stops at the first frame it does not take (control frames, fragments,
    reserved bits, unmasked or oversized frames, a frame cut by the read):
    that frame and the rest go to websockets, which also decides every error.
    """
    payloads: list[bytes] = []
    pos, end = 0, len(data)
    while pos + 6 <= end:
        b0, n = data[pos], data[pos + 1] ^ 0x80  # FIN + opcode; mask bit flipped off
        if (b0 != 0x81 and b0 != 0x82) or n > 126:  # not a final data frame, or unmasked, or 64-bit length
            break
        if n < 126:
            key = pos + 2
        else:  # a 16-bit length (its two bytes are within the six checked)
            n = (data[pos + 2] << 8) | data[pos + 3]
            key = pos + 4
        stop = key + 4 + n
        if stop > end or n > max_size:
            break
        payloads.append(_apply_mask(data[key + 4:stop], data[key:key + 4]))
        pos = stop
    return payloads, pos


class Reader:
    """One connection's reading, across parking.

    ``process(client, payload)`` gets every message; ``on_end(reader)`` runs
    once, in the reader's greenlet, when the connection is over (the peer
    closed, a protocol error, our own close answered, an I/O error).
    """

    __slots__ = ("client", "sock", "process", "on_end", "max_size", "recv_size", "rate", "burst",
                 "proto", "fragments", "fragments_size", "tokens", "last", "waiting", "active",
                 "greenlet")

    def __init__(self, client: Client, sock: Any, process: Callable[[Client, Any], None],
                 on_end: Callable[[Reader], None], max_size: int, recv_size: int = 65536,
                 rate: float = 0.0, burst: float = 0.0) -> None:
        self.client = client
        self.sock = sock
        self.process = process
        self.on_end = on_end
        self.max_size = max_size
        self.recv_size = recv_size
        self.rate, self.burst = rate, burst
        self.proto: Protocol | None = None
        self.fragments: list[Any] | None = None
        self.fragments_size = 0
        self.tokens, self.last = burst, _monotonic()
        self.waiting = False   # in its greenlet, waiting for input
        self.active = False    # read something since the last parking pass
        self.greenlet: gevent.Greenlet | None = None
        sock.settimeout(None)  # liveness is the pinger's job: no timer per read

    def __repr__(self) -> str:
        state = "parked" if self.greenlet is None else "waiting" if self.waiting else "running"
        return f"<Reader {self.client!r} {state}>"

    def park(self) -> None:
        """No greenlet until the socket is readable."""
        self.greenlet = None
        _awake.discard(self)
        self.sock._read_event.start(_resume, self)

    def _protocol(self) -> Protocol:
        proto = self.proto = Protocol(Side.SERVER, state=State.OPEN, max_size=self.max_size,
                                      logger=_protocol_log)
        return proto

    def run(self) -> None:
        """The greenlet's body: read until parked or ended."""
        ended = True  # unless parked: an error, even GreenletExit, ends the connection
        try:
            ended = self._read()
        except Exception:
            log.exception("connection %s failed", self.client.remote_address)
        finally:
            if ended:
                _awake.discard(self)
                self.greenlet = None
                self.on_end(self)

    def _read(self) -> bool:
        """Read and dispatch until the connection ends (True) or is parked (False)."""
        client, process, max_size, recv_size = self.client, self.process, self.max_size, self.recv_size
        sock = self.sock
        # Read the non-blocking stdlib socket under the gevent one, and after a
        # short read wait for input *before* reading: gevent's recv() would try
        # first, get EAGAIN (a syscall and an exception per message) and wait anyway.
        read, wait, readable = sock._sock.recv, sock._wait, sock._read_event
        proto = self.proto
        fragments, fragments_size = self.fragments, self.fragments_size
        rate, burst = self.rate, self.burst
        tokens, last = self.tokens, self.last
        more = True  # resumed, or the last read filled the buffer: read at once
        while True:
            try:
                if not more:
                    self.waiting = True
                    try:
                        wait(readable)
                    finally:
                        self.waiting = False
                data = read(recv_size)
            except BlockingIOError:
                more = False
                continue
            except Park:
                self.fragments, self.fragments_size, self.tokens, self.last = fragments, fragments_size, tokens, last
                self.park()
                return False
            except OSError:
                return True
            if not data:
                return True
            more = len(data) == recv_size
            self.active = client.seen = True
            counters["bytes_in"] += len(data)
            fast: list[bytes] = []
            taken = 0
            if fragments is None and (proto is None or not proto.reader.buffer):
                fast, taken = fast_frames(data, max_size)
            fed = taken < len(data)
            if fed:  # the rest (or all) through websockets
                if proto is None:
                    proto = self._protocol()
                proto.receive_data(data[taken:] if taken else data)
                events: list[Frame] = proto.events_received()  # type: ignore[assignment]  # open: frames only
            else:
                events = []
            if rate:
                now = _monotonic()
                tokens = min(burst, tokens + (now - last) * rate) - len(fast) - len(events)
                last = now
                if tokens < 0 and not client._closing:
                    counters["rate_limited_disconnects"] += 1
                    _warn.warning("rate-limit", "closing %s (#%d): more than %s messages/s (burst %s)",
                                  client.remote_address, client.id, rate, burst)
                    client.close(1008, "Rate limit exceeded")
            for payload in fast:
                if client._closing:
                    break  # closing: the peer's remaining frames are not processed
                counters["frames_in"] += 1
                process(client, payload)
            for frame in events:
                op = frame.opcode
                if client._closing and op is not _CLOSE:
                    continue  # closing: the peer's remaining frames are not processed
                if op is _TEXT or op is _BINARY:
                    counters["frames_in"] += 1
                    if frame.fin:
                        process(client, frame.data)
                    else:
                        fragments = [frame.data]
                        fragments_size = len(frame.data)
                elif op is _CONT and fragments is not None:
                    fragments.append(frame.data)
                    fragments_size += len(frame.data)
                    if fragments_size > max_size:
                        assert proto is not None
                        proto.fail(1009, "message too big")
                        fragments = None
                    elif frame.fin:
                        counters["frames_in"] += 1
                        process(client, b"".join(fragments))
                        fragments = None
                elif op is _CLOSE and client._closing:
                    return True  # the answer to our own close
            if fed:  # pongs, close echoes, a close after a protocol error
                assert proto is not None
                for chunk in proto.data_to_send():
                    if chunk:
                        client.send_control(chunk)
                if proto.state is not State.OPEN:
                    if proto.parser_exc is not None:
                        log.info("closing %s (#%d): %s", client.remote_address, client.id, proto.parser_exc)
                    return True


def _resume(reader: Reader) -> None:
    """The hub's callback for a parked reader's socket: input, give it a greenlet."""
    global _parker
    reader.sock._read_event.stop()
    _awake.add(reader)
    reader.greenlet = _spawn(reader.run)
    if _parker is None:
        _parker = _spawn(_park_idle)


def _park_if_waiting(reader: Reader) -> None:
    # a hub callback: the reader is not running, so "waiting" is exact
    glet = reader.greenlet
    if reader.waiting and glet is not None:
        glet.throw(Park)


def _park_idle() -> None:
    global _parker
    run_callback = gevent.get_hub().loop.run_callback
    try:
        while _awake:
            gevent.sleep(PARK_AFTER)
            for reader in list(_awake):
                if reader.active:
                    reader.active = False
                elif reader.waiting:
                    run_callback(_park_if_waiting, reader)
    finally:
        _parker = None
        if _awake:  # woke as we were leaving
            _parker = _spawn(_park_idle)


def awake_readers() -> int:
    """How many connections of this process have a reading greenlet now."""
    return len(_awake)

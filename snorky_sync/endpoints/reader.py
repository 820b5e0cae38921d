"""Reading one WebSocket connection: frames off the socket, to the registry.

A connection that talks has a greenlet of its own, which reads, parses and
hands every message to the registry in order (architecture.md rule 2).  A
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
* The read state (websockets' protocol, a fragmented message, the input
  budget) lives on the :class:`Reader`, so a parked connection resumes
  exactly where it was.  websockets' protocol object itself is made only
  when a frame needs it (see :func:`fast_frames`).

One connection's input costs a bounded share of the worker (architecture.md rule
12): every read is charged to its :class:`~.limits.InputBudget` (messages,
counted when complete, and bytes); over the message rate it is closed
(1008), over the byte rate its socket is not read for
:meth:`~.limits.InputBudget.delay` seconds (TCP backpressure slows the
sender; counted as ``input_throttled``); and a reader whose socket still
has input after a full read waits for the hub to be idle before it reads
again (:func:`snorky_sync.hub.idle`: every other connection with input is
served first, for up to :data:`FAIR_MAX_WAIT`; ``sleep(0)`` was not enough,
as gevent polls for I/O only every 50 callbacks, and each can be a costly
message; an unbounded ``gevent.idle()`` starved it on a hub that is never idle).  A text message that is not UTF-8 closes the connection with 1007
(RFC 6455 §8.1), on the fast path too.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from .. import hub
from ..client import Client
from ..logs import RateLimitedLogger, printable
from ..metrics import counters
from .limits import RATE_EXCEEDED, InputBudget

try:  # websockets' C unmasking, as its own parser uses it
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - a websockets built without its C extension
    from websockets.utils import apply_mask as _apply_mask

__all__ = ["Reader", "Parker", "fast_frames", "frame_boundary", "PARK_AFTER", "awake_readers"]

log = logging.getLogger("snorky_sync.websocket")
_warn = RateLimitedLogger(log)
# websockets logs "connection open" at INFO for every handshake; keep it out.
_protocol_log = logging.getLogger("snorky_sync.websocket.protocol")
_protocol_log.setLevel(logging.WARNING)

#: seconds between passes that park readers idle since the previous pass
PARK_AFTER = 1.0

_spawn = gevent.spawn
_sleep = gevent.sleep
_idle = hub.idle
#: the longest a reader with more input waits for the others (snorky_sync.hub)
FAIR_MAX_WAIT = 0.02
_monotonic = time.monotonic
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE


class Park(BaseException):
    """Thrown into a reader waiting for input: park the connection."""


def utf8(data: bytes | bytearray | memoryview) -> bool:
    """Is ``data`` valid UTF-8?  ASCII (most JSON) is checked without decoding."""
    if type(data) is memoryview:
        data = data.tobytes()
    if data.isascii():
        return True
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def fast_frames(data: bytes, max_size: int) -> tuple[list[bytes], int]:
    """The payloads of the complete, unfragmented, masked text/binary frames
    at the start of ``data`` (up to 64 KiB each), and where they end.

    The common case of a read — one or a few small messages — without
    websockets' generator-based parser (2.4 µs per frame here, against 0.2 µs
    for this loop; the unmasking is websockets' own C ``apply_mask``).  It
    stops at the first frame it does not take (control frames, fragments,
    reserved bits, unmasked or oversized frames, a frame cut by the read, a
    text frame that is not UTF-8): that frame and the rest go to the
    websockets path, where every error is decided.
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
        payload = _apply_mask(data[key + 4:stop], data[key:key + 4])
        if b0 == 0x81 and not payload.isascii() and not utf8(payload):
            break
        payloads.append(payload)
        pos = stop
    return payloads, pos


def frame_boundary(data: bytes, need: int, head: bytes) -> tuple[int, bytes]:
    """Where websockets' parser stands once it has ``data`` too: the payload
    bytes of the current frame still to come, and the start of a header not
    complete yet; ``(0, b"")`` at a frame boundary.  ``need`` and ``head``:
    the same before ``data``.

    The fast path may only start at a frame boundary, and websockets' own
    buffer does not tell: its parser takes a header and mask out of it before
    the payload arrives (a read that ends right after a mask left the buffer
    empty mid-frame, and the next read was parsed from the payload on).
    """
    pos, end = 0, len(data)
    if need:
        pos = min(need, end)
        if need > end:
            return need - end, b""
    if head:
        data, pos = head + data[pos:], 0
        end = len(data)
    while pos < end:
        b1 = data[pos + 1] if pos + 1 < end else 0
        n = b1 & 0x7F
        size = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if b1 & 0x80 else 0)
        if pos + 2 > end or pos + size > end:
            return 0, bytes(data[pos:])
        if n == 126:
            n = int.from_bytes(data[pos + 2:pos + 4], "big")
        elif n == 127:
            n = int.from_bytes(data[pos + 2:pos + 10], "big")
        pos += size + n
        if pos > end:
            return pos - end, b""
    return 0, b""


class Reader:
    """One connection's reading, across parking.

    ``process(client, payload)`` gets every message; ``on_end(reader)`` runs
    once, in the reader's greenlet, when the connection is over (the peer
    closed, a protocol error, our own close answered, an I/O error).
    """

    __slots__ = ("client", "sock", "process", "on_end", "max_size", "recv_size", "budget",
                 "proto", "ws_need", "ws_head", "fragments", "fragments_size", "fragments_text",
                 "waiting", "active",
                 "greenlet", "parker")

    def __init__(self, client: Client, sock: Any, process: Callable[[Client, Any], None],
                 on_end: Callable[[Reader], None], max_size: int, recv_size: int = 65536,
                 budget: InputBudget | None = None, parker: Parker | None = None) -> None:
        self.client = client
        self.sock = sock
        self.process = process
        self.on_end = on_end
        self.max_size = max_size
        self.recv_size = recv_size
        self.budget = budget  # None: no limits (tests, trusted peers)
        self.proto: Protocol | None = None
        # where websockets' parser stands (frame_boundary): the fast path only at a boundary
        self.ws_need = 0
        self.ws_head = b""
        self.fragments: list[Any] | None = None
        self.fragments_size = 0
        self.fragments_text = False
        self.waiting = False   # in its greenlet, waiting for input
        self.active = False    # read something since the last parking pass
        self.greenlet: gevent.Greenlet | None = None
        #: parks it when idle (its hub's)
        self.parker = Parker.of_hub() if parker is None else parker
        sock.settimeout(None)  # liveness is the pinger's job: no timer per read

    def __repr__(self) -> str:
        state = "parked" if self.greenlet is None else "waiting" if self.waiting else "running"
        return f"<Reader {self.client!r} {state}>"

    def park(self) -> None:
        """No greenlet until the socket is readable."""
        self.greenlet = None
        self.parker.awake.discard(self)
        self.sock._read_event.start(self.parker.resume, self)

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
            _warn.exception("connection-failed", "connection %s failed",
                            printable(self.client.remote_address))
        finally:
            if ended:
                self.parker.awake.discard(self)
                self.greenlet = None
                self.on_end(self)

    def _read(self) -> bool:
        """Read and dispatch until the connection ends (True) or is parked (False)."""
        client, process, max_size, recv_size = self.client, self.process, self.max_size, self.recv_size
        sock, budget = self.sock, self.budget
        # Read the non-blocking stdlib socket under the gevent one, and after a
        # short read wait for input *before* reading: gevent's recv() would try
        # first, get EAGAIN (a syscall and an exception per message) and wait anyway.
        read, wait, readable = sock._sock.recv, sock._wait, sock._read_event
        proto = self.proto
        fragments, fragments_size, fragments_text = self.fragments, self.fragments_size, self.fragments_text
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
                self.fragments, self.fragments_size, self.fragments_text = \
                    fragments, fragments_size, fragments_text
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
            if fragments is None and (proto is None or (
                    not self.ws_need and not self.ws_head and not proto.reader.buffer)):
                fast, taken = fast_frames(data, max_size)
            fed = taken < len(data)
            if fed:  # the rest (or all) through websockets
                if proto is None:
                    proto = self._protocol()
                rest = data[taken:] if taken else data
                self.ws_need, self.ws_head = frame_boundary(rest, self.ws_need, self.ws_head)
                proto.receive_data(rest)
                events: list[Frame] = proto.events_received()  # type: ignore[assignment]  # open: frames only
            else:
                events = []
            if budget is not None:
                # a message is counted once, when complete (a fragment's last
                # frame, or a control frame); bytes as they are read
                messages = len(fast)
                for frame in events:
                    if frame.fin:
                        messages += 1
                if not budget.charge(messages, len(data)) and not client.is_closing:
                    counters["rate_limited_disconnects"] += 1
                    m = budget.messages
                    _warn.warning("rate-limit", "closing %s (#%d): more than %s messages/s (burst %s)",
                                  printable(client.remote_address), client.id, m.rate, m.burst)
                    client.close(1008, RATE_EXCEEDED)
            for payload in fast:
                if client.is_closing:
                    break  # closing: the peer's remaining frames are not processed
                counters["frames_in"] += 1
                process(client, payload)
            failed = False
            for frame in events:
                op = frame.opcode
                if client.is_closing and op is not _CLOSE:
                    continue  # closing: the peer's remaining frames are not processed
                if op is _TEXT or op is _BINARY:
                    if frame.fin:
                        if op is _TEXT and not utf8(frame.data):
                            failed = True
                            break
                        counters["frames_in"] += 1
                        process(client, frame.data)
                    else:
                        fragments = [frame.data]
                        fragments_size = len(frame.data)
                        fragments_text = op is _TEXT
                elif op is _CONT and fragments is not None:
                    fragments.append(frame.data)
                    fragments_size += len(frame.data)
                    if fragments_size > max_size:  # websockets checks it too; never buffer past it
                        assert proto is not None
                        proto.fail(1009, "message too big")
                        break
                    elif frame.fin:
                        message = b"".join(fragments)
                        fragments = None
                        if fragments_text and not utf8(message):
                            failed = True
                            break
                        counters["frames_in"] += 1
                        process(client, message)
                elif op is _CLOSE and client.is_closing:
                    return True  # the answer to our own close
            if failed:
                assert proto is not None
                counters["frames_invalid_utf8"] += 1
                proto.fail(1007, "invalid UTF-8 in a text message")
            if fed:  # pongs, close echoes, a close after a protocol error
                assert proto is not None
                for chunk in proto.data_to_send():
                    if chunk:
                        client.send_control(chunk)
                if proto.state is not State.OPEN:
                    if proto.parser_exc is not None:
                        _warn.info("protocol-error", "closing %s (#%d): %s",
                                   printable(client.remote_address), client.id,
                                   printable(proto.parser_exc))
                    return True
            if budget is not None:
                delay = budget.delay()
                if delay:  # over its byte rate: leave its input in the socket for a while
                    counters["input_throttled"] += 1
                    _sleep(delay)
                    continue
            if more:  # more input is waiting: let the other connections be served first
                _idle(FAIR_MAX_WAIT)

class Parker:
    """Takes the greenlet away from readers idle for :data:`PARK_AFTER`
    (one per hub: :meth:`of_hub`; tests make their own)."""

    __slots__ = ("awake", "greenlet")

    def __init__(self) -> None:
        self.awake: set[Reader] = set()  # readers that have a greenlet
        self.greenlet: gevent.Greenlet | None = None

    @staticmethod
    def of_hub() -> Parker:
        """The current gevent hub's parker (made on first use)."""
        return hub.of_hub("snorky_parker", Parker)

    def resume(self, reader: Reader) -> None:
        """The hub's callback for a parked reader's socket: input, give it a greenlet."""
        reader.sock._read_event.stop()
        self.awake.add(reader)
        reader.greenlet = _spawn(reader.run)
        if self.greenlet is None:
            self.greenlet = _spawn(self._run)

    def _run(self) -> None:
        awake = self.awake
        run_callback = gevent.get_hub().loop.run_callback
        try:
            while awake:
                gevent.sleep(PARK_AFTER)
                for reader in list(awake):
                    if reader.active:
                        reader.active = False
                    elif reader.waiting:
                        run_callback(_park_if_waiting, reader)
        finally:
            self.greenlet = None
            if awake:  # woke as we were leaving
                self.greenlet = _spawn(self._run)


def _park_if_waiting(reader: Reader) -> None:
    # a hub callback: the reader is not running, so "waiting" is exact
    glet = reader.greenlet
    if reader.waiting and glet is not None:
        glet.throw(Park)


def awake_readers() -> int:
    """How many connections of this process have a reading greenlet now."""
    return len(Parker.of_hub().awake)

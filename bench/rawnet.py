"""Raw sockets for the hostile-client bench: WebSocket and HTTP/1.1 from a chosen loopback address.

Every client socket is bound to a source address before it connects (the
whole of 127.0.0.0/8 is loopback on Linux), so the server sees the attackers
as 127.0.0.2 and the victim as 127.0.0.1.  Sends never block for long: a
big frame is pushed with :func:`pump`, which reads and discards whatever the
server sends meanwhile (an attacker that stops reading would be cut as a slow
consumer, and would stop hurting) and gives up as soon as ``stop`` is set.
"""
from __future__ import annotations

import base64
import os
import select
import socket
import threading
import time

__all__ = ["ATTACKER", "VICTIM", "Refused", "Closed", "tcp", "ws_open", "ws_frame", "read_frames", "pump",
           "idle", "http", "nested_lists"]

ATTACKER = "127.0.0.2"
VICTIM = "127.0.0.1"
SERVER = "127.0.0.1"
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # port chosen at connect
_CHUNK = 4 * 1024 * 1024


class Refused(Exception):
    """The server answered something else than the expected status (its status line)."""


class Closed(ConnectionError):
    """The server closed the connection."""


def tcp(port: int, src: str = ATTACKER, rcvbuf: int | None = None, timeout: float | None = 10.0) -> socket.socket:
    """A TCP connection from ``src`` to the server (blocking, with ``timeout``)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        if rcvbuf:  # before connect, so the window is negotiated for it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((SERVER, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return s


def read_head(s: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP answer's head and whatever came after it in the same reads."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise Closed(f"closed before the answer's head ({len(got)} bytes)")
        got += chunk
        if len(got) > 1 << 20:
            raise Refused("answer head over 1 MiB")
    head, _, rest = got.partition(b"\r\n\r\n")
    return head, rest


def ws_open(port: int, path: str = "/ws", src: str = ATTACKER, rcvbuf: int | None = None,
            timeout: float | None = 10.0) -> tuple[socket.socket, bytes]:
    """An upgraded WebSocket and the bytes read after the 101's head; raises
    :class:`Refused` with the status line when the server says no."""
    s = tcp(port, src, rcvbuf, timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head, rest = read_head(s)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Refused(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    except BaseException:
        s.close()
        raise
    return s, rest


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (the XOR done on big integers: fast for 10 MiB)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def read_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Split complete (unmasked, server) frames off the front of ``buf``: (opcode, payload)."""
    out = []
    while len(buf) >= 2:
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        out.append((buf[0] & 0x0F, bytes(buf[at:at + n])))
        del buf[:at + n]
    return out


def _wait(s: socket.socket, write: bool, timeout: float) -> tuple[bool, bool]:
    p = select.poll()
    p.register(s, select.POLLIN | (select.POLLOUT if write else 0))
    events = p.poll(timeout * 1000)
    ev = events[0][1] if events else 0
    return bool(ev & (select.POLLIN | select.POLLHUP | select.POLLERR)), bool(ev & select.POLLOUT)


def _discard(s: socket.socket) -> None:
    try:
        chunk = s.recv(262144)
    except BlockingIOError:
        return
    if not chunk:
        raise Closed("closed by the server")


def pump(s: socket.socket, data: bytes, stop: threading.Event) -> bool:
    """Send all of ``data``, discarding what the server sends meanwhile.

    True when sent, False when ``stop`` was set first; :class:`Closed` (or an
    OSError) when the server closed the connection."""
    view = memoryview(data)
    s.setblocking(False)
    try:
        while view:
            if stop.is_set():
                return False
            readable, writable = _wait(s, True, 0.2)
            if readable:
                _discard(s)
            if writable:
                try:
                    view = view[s.send(view[:_CHUNK]):]
                except BlockingIOError:
                    pass
        return True
    finally:
        s.setblocking(True)


def idle(s: socket.socket, until: float, stop: threading.Event) -> bool:
    """Read and discard until the monotonic time ``until``; False when ``stop`` was set."""
    s.setblocking(False)
    try:
        while not stop.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            readable, _ = _wait(s, False, min(left, 0.2))
            if readable:
                _discard(s)
        return False
    finally:
        s.setblocking(True)


def http(s: socket.socket, method: str, path: str, body: bytes = b"", content_type: str | None = None,
         port: int = 0) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive socket: (status, body).  The body is
    read by Content-Length, chunks, or to the close."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    s.sendall(head.encode() + b"\r\n")
    if body:
        s.sendall(body)
    answer, rest = read_head(s)
    lines = answer.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    if status in (204, 304) or method == "HEAD":
        return status, b""
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        out = b""
        buf = rest
        while True:
            while b"\r\n" not in buf:
                buf += _recv(s)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += _recv(s)
            out, buf = out + buf[:size], buf[size + 2:]
            if size == 0:
                return status, out
    if b"content-length" in fields:
        n = int(fields[b"content-length"])
        while len(rest) < n:
            rest += _recv(s)
        return status, rest[:n]
    while True:  # no length: the close ends the body
        chunk = s.recv(65536)
        if not chunk:
            return status, rest
        rest += chunk


def _recv(s: socket.socket) -> bytes:
    chunk = s.recv(65536)
    if not chunk:
        raise Closed("closed in the middle of an answer")
    return chunk


def nested_lists(size: int, first: bytes = b"") -> bytes:
    """``[[],[],...]`` of at most ``size`` bytes (``first,`` as its first item
    when given): the JSON costing the most objects per byte to parse."""
    lead = b"[" + (first + b"," if first else b"")
    k = max(0, (size - len(lead) - 3) // 3)
    return lead + b"[]," * k + b"[]]"

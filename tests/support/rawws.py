"""A raw WebSocket client for byte-level tests: frames built by hand, read as they come."""
import base64
import json
import os
import socket
from collections.abc import Callable


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False, masked: bool = True,
          long_length: bool = False) -> bytes:
    """A client frame built by hand (so broken ones can be built too: a reserved
    bit, no mask, a 64-bit length for a short payload)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mbit = 0x80 if masked else 0
    if long_length or n >= 65536:
        head = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    elif n < 126:
        head = bytes((b0, mbit | n))
    else:
        head = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def text_frame(obj) -> bytes:
    """``obj`` as JSON in a masked client text frame."""
    return frame(0x1, json.dumps(obj).encode())


def read_until(s: socket.socket, until: bytes | Callable[[bytes], bool], got: bytes = b"") -> bytes:
    """Read from ``s`` onto ``got`` until ``until`` is in it (bytes) or
    ``until(got)`` is true (a function), or the peer closes; all read."""
    done = until if callable(until) else (lambda data: until in data)
    while not done(got):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def handshake(port: int, path: str = "/ws", origin: str | None = None, rcvbuf: int | None = None,
              timeout: float | None = 10.0) -> tuple[socket.socket, bytes]:
    """A raw WebSocket upgrade: the socket and every byte read up to the end of
    the answer's head (with whatever came in the same reads after it)."""
    s = socket.socket()
    if rcvbuf:  # before connect, so that the window is negotiated for it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Origin: {origin}\r\n" if origin else ""
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"{extra}\r\n").encode())
    got = read_until(s, b"\r\n\r\n")
    assert b"\r\n\r\n" in got, got
    return s, got


def open_ws(port: int, rcvbuf: int | None = None) -> socket.socket:
    """An upgraded raw WebSocket (blocking, no timeout)."""
    s, got = handshake(port, rcvbuf=rcvbuf, timeout=None)
    assert got.startswith(b"HTTP/1.1 101"), got
    return s


def call(call_id: int, a: int, pad: int = 0) -> bytes:
    msg = {"service": "calc", "message": {"command": "add", "params": {"a": a, "b": 1}, "callId": call_id}}
    if pad:
        msg["pad"] = "x" * pad  # the envelope ignores other keys
    return json.dumps(msg).encode()


class Raw:
    def __init__(self, port: int):
        self.s, got = handshake(port)
        head, self.buf = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def read_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = int.from_bytes(self.buf[2:4], "big"), 4
                if n < 127 and len(self.buf) >= at + n:
                    op, payload, self.buf = self.buf[0] & 0x0F, self.buf[at:at + n], self.buf[at + n:]
                    return op, payload
            chunk = self.s.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk

    def replies(self, count: int) -> list:
        out = []
        while len(out) < count:
            op, payload = self.read_frame()
            out.append(("pong", payload) if op == 0xA else json.loads(payload)["message"])
        return out

"""A raw WebSocket client for byte-level tests: frames built by hand, read as they come."""
import base64
import json
import os
import socket


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = bytes((b0, 0x80 | n)) if n < 126 else bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def call(call_id: int, a: int, pad: int = 0) -> bytes:
    msg = {"service": "calc", "message": {"command": "add", "params": {"a": a, "b": 1}, "callId": call_id}}
    if pad:
        msg["pad"] = "x" * pad  # the envelope ignores other keys
    return json.dumps(msg).encode()


class Raw:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            assert chunk, self.buf
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
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

"""A tiny HTTP/1.x client over a raw socket that hands out a streaming
response chunk by chunk (what SockJS's streaming transports need checked)."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit


class Stream:
    """One request; ``status``, ``headers`` (lower-case names), ``read()`` one chunk."""

    def __init__(self, method: str, url: str, headers: dict | None = None, body: bytes = b"",
                 http: str = "1.1", timeout: float = 10.0, lazy: bool = False) -> None:
        """``lazy``: send now, read the status line and headers at the first ``read()``."""
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        path = u.path + ("?" + u.query if u.query else "")
        lines = [f"{method} {path} HTTP/{http}", f"Host: {u.netloc}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.buf = b""
        self.ended = False
        self.status = None
        if not lazy:
            self._head()

    def _head(self) -> None:
        head = self._until(b"\r\n\r\n")
        first, *rest = head.decode("latin-1").split("\r\n")
        self.http = first.split()[0].split("/")[1]
        self.status = int(first.split()[1])
        self.headers: dict[str, str] = {}
        for line in rest:
            if line:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.length = int(self.headers["content-length"]) if "content-length" in self.headers else None

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError("connection closed")
        head, _, self.buf = self.buf.partition(sep)
        return head

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read(self) -> bytes:
        """The next chunk (b"" once the body ended)."""
        if self.status is None:
            self._head()
        if self.ended:
            return b""
        if self.chunked:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            data = self._exact(size)
            self._exact(2)
            if size == 0:
                self.ended = True
            return data
        if self.length is not None:
            data = self._exact(self.length)
            self.ended = True
            return data
        if not self.buf and not self._fill():
            self.ended = True
            return b""
        data, self.buf = self.buf, b""
        return data

    def body(self) -> bytes:
        out = b""
        while True:
            chunk = self.read()
            if not chunk:
                return out
            out += chunk

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def request(method: str, url: str, headers: dict | None = None, body: bytes = b"", **kw) -> Stream:
    """A whole response: ``.status``, ``.headers``, ``.data``."""
    r = Stream(method, url, headers, body, **kw)
    r.data = r.body() if r.status not in (204, 304) else r.buf
    r.close()
    return r

"""Slowloris: connections that hold the server by sending their request slowly, or never.

Issue #21 item 5.  Against each serving mode: hundreds of connections that
send nothing, trickle header bytes, idle between keep-alive requests or
trickle a body are each closed within their deadline (plus a wide margin),
while a legitimate request and a WebSocket handshake are still answered; a
header block of megabytes gets an error status and a close before the server
has taken a megabyte of it.  The server runs with 2-second deadlines so the
attacks end quickly; under ``gunicorn -k gevent`` what holds is gunicorn's own
parser (its ``keepalive``, which gunicorn.conf.py sets from these settings,
and its 100 x 8190-byte header limits).
"""
from __future__ import annotations

import select
import socket
import time

import pytest
import requests

from support.rawws import handshake

DEADLINE = 2.0  # every SNORKY_*_TIMEOUT of the server below
MARGIN = 20.0   # a noisy machine; without a deadline they stay open forever
N = 200
SERVER_ENV = {"SNORKY_HEADER_TIMEOUT": str(DEADLINE), "SNORKY_KEEPALIVE_TIMEOUT": str(DEADLINE),
              "SNORKY_BODY_TIMEOUT": str(DEADLINE)}
TRICKLE = b"X-Slow: 1\r\n"


class Crowd:
    """Many raw client sockets, each either open or seen closed (EOF, reset)."""

    def __init__(self, port: int, n: int) -> None:
        self.open: list[socket.socket] = []
        self.answers: dict[socket.socket, bytes] = {}
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            self.open.append(s)
            self.answers[s] = b""

    def send_each(self, data: bytes) -> None:
        for s in list(self.open):
            try:
                s.send(data)
            except BlockingIOError:
                pass
            except OSError:  # reset / broken pipe: the server closed it
                self._closed(s)

    def poll(self) -> None:
        """Read what has come; a socket at EOF or reset is closed."""
        for s in list(self.open):
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        self._closed(s)
                        break
                    self.answers[s] += chunk
            except BlockingIOError:
                pass
            except OSError:
                self._closed(s)

    def _closed(self, s: socket.socket) -> None:
        if s in self.open:
            self.open.remove(s)
            s.close()

    def close(self) -> None:
        for s in self.open:
            s.close()


def legit_requests_answered(srv) -> None:
    """A plain request and a WebSocket handshake get through while the attack runs."""
    assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200
    ws, got = handshake(srv.port, "/ws")
    ws.close()
    assert got.startswith(b"HTTP/1.1 101"), got


def hold_until_closed(srv, crowd: Crowd, trickle: bytes | None, limit: float) -> None:
    """Trickle a byte a second to every open socket (when ``trickle``) until all are
    closed or ``limit`` seconds have passed; check legitimate traffic meanwhile."""
    end = time.monotonic() + limit
    checked = False
    i = 0
    while crowd.open and time.monotonic() < end:
        if trickle is not None:
            crowd.send_each(trickle[i % len(trickle):][:1])
            i += 1
        crowd.poll()
        if not checked:
            legit_requests_answered(srv)
            checked = True
        time.sleep(0.5)  # the attack's pace, not a synchronisation
    crowd.poll()


@pytest.mark.parametrize("attack", ["silent", "trickled-headers"])
def test_slow_request_heads_are_cut_at_the_header_deadline(default_server, attack):
    crowd = Crowd(default_server.port, N)
    try:
        if attack == "trickled-headers":
            crowd.send_each(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        hold_until_closed(default_server, crowd, TRICKLE if attack != "silent" else None,
                          DEADLINE + MARGIN)
        assert not crowd.open, f"{len(crowd.open)} of {N} connections still open after {DEADLINE + MARGIN}s"
        legit_requests_answered(default_server)
        if attack == "trickled-headers" and default_server.mode != "gunicorn-gevent":
            # a started request is answered 408 before the close (gunicorn closes silently)
            assert all(a.startswith(b"HTTP/1.1 408") for a in crowd.answers.values()), \
                {a[:40] for a in crowd.answers.values()}
    finally:
        crowd.close()


def test_idle_keepalive_connections_are_closed(default_server):
    crowd = Crowd(default_server.port, N)
    try:
        crowd.send_each(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = time.monotonic() + 30
        while time.monotonic() < answered and not all(b"\r\n\r\n" in crowd.answers[s] for s in crowd.open):
            crowd.poll()
            time.sleep(0.05)  # polling 200 sockets for their answers
        assert all(crowd.answers[s].startswith(b"HTTP/1.1 200") for s in crowd.answers)
        hold_until_closed(default_server, crowd, None, DEADLINE + MARGIN)
        assert not crowd.open, f"{len(crowd.open)} idle keep-alive connections still open"
    finally:
        crowd.close()


@pytest.mark.parametrize("path", ["/healthz", "/backend", "/sockjs/000/{sid}/xhr_send"])
def test_trickled_bodies_are_cut_at_the_body_deadline(default_server, path):
    crowd = Crowd(default_server.port, N)
    try:
        for i, s in enumerate(crowd.open):
            sid = f"slowbody{i}"
            if "{sid}" in path:  # an open SockJS session of its own to send into
                opened = requests.post(f"{default_server.url}/sockjs/000/{sid}/xhr", timeout=10)
                assert opened.text.startswith("o"), opened.text
            s.sendall(f"POST {path.format(sid=sid)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 1000000\r\n\r\n[".encode())
        hold_until_closed(default_server, crowd, b"0,", DEADLINE * 2 + MARGIN)
        assert not crowd.open, f"{len(crowd.open)} trickled bodies on {path} still open"
        legit_requests_answered(default_server)
    finally:
        crowd.close()


def huge_head(kind: str):
    yield b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    if kind == "one-endless-header":
        yield b"X-Long: "
        while True:
            yield b"a" * 16384
    while True:  # many long headers: 100 lines of 60 KB were 6 MB held per request
        yield b"X-Long: " + b"a" * 60000 + b"\r\n"


@pytest.mark.parametrize("kind", ["one-endless-header", "many-long-headers"])
def test_huge_header_blocks_are_refused_early(default_server, kind):
    s = socket.create_connection(("127.0.0.1", default_server.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sent, answer, closed, reset = 0, b"", False, False
    try:
        for piece in huge_head(kind):
            try:
                s.sendall(piece)
            except OSError:  # reset: the server closed (its answer may be waiting)
                reset = True
                break
            sent += len(piece)
            # paced by the server: what we count as sent is what the kernel took,
            # which a busy server has not read yet; give it a moment to answer
            readable, _, _ = select.select([s], [], [], 0.2)
            if not readable:
                continue
            try:
                answer = s.recv(65536)
                closed = not answer
                break
            except OSError:
                closed = reset = True
                break
            if sent > 16 * 1024 * 1024:
                break
        s.settimeout(10)
        try:
            while not closed:
                chunk = s.recv(65536)
                answer += chunk
                closed = not chunk
        except OSError:
            closed = reset = True
        status = answer[:12]
        # closing with our bytes unread makes the server's kernel send RST, which
        # may destroy its answer before we read it: a reset with no answer is a refusal too
        # (gunicorn -k gevent's own parser may also close without an answer)
        silent_ok = reset or default_server.mode == "gunicorn-gevent"
        assert status in (b"HTTP/1.1 431", b"HTTP/1.1 400") or (silent_ok and not answer), (answer[:80], sent)
        assert closed
        assert sent < 1024 * 1024, f"the server read {sent} bytes of headers before refusing them"
        legit_requests_answered(default_server)
    finally:
        s.close()

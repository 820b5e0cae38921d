"""The closing drain: a WebSocket that got its close frame is closed within a total deadline.

Issue #21 item 9.  After the server's close frame the connection drains what
the peer still sends until the peer closes.  A peer that never closes and
trickles a byte a second kept that drain (a timeout per read) open forever,
and the connection no longer counted: 400 such sockets were held while
/healthz said 0.  Against each serving mode: every such socket is closed
within ``SNORKY_CLOSE_TIMEOUT`` (plus a wide margin), and until it is closed
it counts against ``SNORKY_MAX_CONNECTIONS`` and in /healthz.
"""
from __future__ import annotations

import time

import pytest

from support.rawws import Raw, frame, handshake
from support.waiting import healthz, wait_connections

CLOSE_TIMEOUT = 3.0  # > the 1 s trickle: a per-read deadline would never end it
MAX_CONNECTIONS = 40
MARGIN = 20.0
SERVER_ENV = {"SNORKY_CLOSE_TIMEOUT": str(CLOSE_TIMEOUT), "SNORKY_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}

TRIGGERS = {
    # the server closes (1002) on an unmasked client frame
    "protocol-error": frame(0x1, b"{}", masked=False),
    # the peer closes first and gets the server's answer
    "client-close": frame(0x8, (1000).to_bytes(2, "big")),
}


def healthz_connections(srv) -> int:
    return healthz(srv)["connections"]


def wait_for_no_connections(srv, timeout: float = 30.0) -> None:
    wait_connections(srv, 0, timeout)


def closing(srv, n: int, trigger: bytes) -> list[Raw]:
    """``n`` WebSockets that have received the server's close frame and never answer it."""
    conns = [Raw(srv.port) for _ in range(n)]
    for c in conns:
        c.s.sendall(trigger)
    for c in conns:
        while True:
            op, _ = c.read_frame()
            if op == 0x8:
                break
        c.s.setblocking(False)
    return conns


def trickle_until_closed(conns: list[Raw], limit: float) -> list[Raw]:
    """Send each open one a byte a second (never a whole frame) until the server
    has closed them all (a send or read is reset: the server's half-close, EOF,
    is not enough) or ``limit`` seconds pass; the ones still open."""
    open_ = list(conns)
    end = time.monotonic() + limit
    while open_ and time.monotonic() < end:
        for c in list(open_):
            try:
                c.s.send(b"\x81")
                while c.s.recv(65536):
                    pass
            except BlockingIOError:
                pass
            except OSError:  # reset, broken pipe: the server's socket is gone
                open_.remove(c)
        time.sleep(1.0)  # the attack's pace, not a synchronisation
    return open_


def refused(srv) -> bool:
    """Whether a new WebSocket is refused: 503, or (gevent-websocket) a close right after 101."""
    s, got = handshake(srv.port, "/ws")
    try:
        head, _, rest = got.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            assert head.startswith(b"HTTP/1.1 503"), head
            return True
        s.sendall(frame(0x9, b"alive?"))
        while len(rest) < 2:
            rest += s.recv(4096)
        return rest[0] & 0x0F == 0x8  # a close, not the pong
    finally:
        s.close()


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_trickling_closers_are_closed_within_the_close_deadline(default_server, trigger):
    wait_for_no_connections(default_server)
    conns = closing(default_server, MAX_CONNECTIONS // 2, TRIGGERS[trigger])
    try:
        left = trickle_until_closed(conns, CLOSE_TIMEOUT + MARGIN)
        assert not left, f"{len(left)} closing connections still open after {CLOSE_TIMEOUT + MARGIN}s"
        wait_for_no_connections(default_server)
    finally:
        for c in conns:
            c.s.close()


def test_closing_connections_count_against_the_cap_until_closed(default_server):
    wait_for_no_connections(default_server)
    conns = closing(default_server, MAX_CONNECTIONS, TRIGGERS["protocol-error"])
    try:
        # every one is draining now (the server sent its close): all still count
        assert refused(default_server)
        assert healthz_connections(default_server) == MAX_CONNECTIONS
        left = trickle_until_closed(conns, CLOSE_TIMEOUT + MARGIN)
        assert not left
        wait_for_no_connections(default_server)
        assert not refused(default_server)
    finally:
        for c in conns:
            c.s.close()


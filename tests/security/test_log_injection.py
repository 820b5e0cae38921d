"""A client cannot forge log lines or drive the operator's terminal (issue #21 item 13).

Before: a refused handshake logged the raw ``Origin`` (CR/LF started a
forged line, ESC sequences reached the terminal).  Every value a client
controls that reaches a log line (Origin, X-Forwarded-For behind a trusted
proxy, service names, the text of invalid messages) is escaped
(``snorky_sync.logs.printable``), and the per-client lines are rate-limited.
Sent to the test app under every serving mode (gunicorn's own parser refuses
control characters in headers with 400: nothing reaches the app there).
"""
from __future__ import annotations

import itertools
import json
import re
import socket

import pytest

from support.rawws import Raw, frame, handshake, read_until
from support.servers import WORKER_CLASSES, serving
from support.wsclient import SnorkyTestClient

EVIL = ["http://evil\x1b[31mRED\x1b[0m", "http://evil\rFORGED line one", "http://evil\nFORGED line two",
        "http://evil\r\nFORGED line three", "http://evil\u0085FORGED\u2028FORGED", "http://e\x7fvil\x07"]
# control characters a log line may not hold (the line ends themselves excepted)
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f\x80-\x9f\u2028\u2029]")


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    yield from serving(request, request.param, "tests.integration.testapp:app",
                       {"SNORKY_TRUSTED_PROXIES": "127.0.0.1", "SNORKY_CONNECT_RATE_PER_IP": "1",
                        "SNORKY_CONNECT_BURST_PER_IP": "4"})


_addresses = itertools.count(1)


def raw_request(port: int, path: str, headers: dict[str, str]) -> bytes:
    """A WebSocket handshake with raw header bytes; what the server answers first.
    Each comes from its own address (X-Forwarded-For through the trusted proxy),
    so the per-address connection rate lets it through, unless one is given."""
    n = next(_addresses)
    headers = {"X-Forwarded-For": f"10.1.{n // 250}.{n % 250}", **headers}
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n").encode()
    for name, value in headers.items():
        head += name.encode() + b": " + value.encode("utf-8") + b"\r\n"
    s.sendall(head + b"\r\n")
    try:
        got = read_until(s, b"\r\n\r\n")
        if got.startswith(b"HTTP/1.1 101"):
            # accepted, or refused after the upgrade (gevent-websocket): our close
            # makes the server close too, if it has not already
            s.sendall(frame(0x8, (1000).to_bytes(2, "big")))
            got = read_until(s, lambda data: b"\x88" in data.split(b"\r\n\r\n", 1)[1], got)
    finally:
        s.close()
    return got


def assert_clean(log: str) -> None:
    bad = [line for line in log.splitlines() if CONTROL.search(line) or line.startswith("FORGED")]
    assert not bad, bad[:5]


def test_origin_and_forwarded_address_are_escaped(server):
    for i, origin in enumerate(EVIL):
        # refused by the endpoint's origin allowlist: the refusal is logged with the Origin
        raw_request(server.port, "/ws-session-allowed", {"Origin": origin})
        # a trusted proxy's X-Forwarded-For: refused by the per-address rate past the burst of 4
        for _ in range(5):
            raw_request(server.port, "/ws", {"X-Forwarded-For": f"10.0.0.{i}{origin[11:]}"})
    assert_clean(server.log())


def test_message_fields_are_escaped(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws")
    for text in EVIL:
        c.send(text, 1)                                   # unknown service
        c.send_raw(text)                                  # invalid JSON
        c.send_raw(json.dumps([text]))                    # not an envelope
        c.send_raw(json.dumps({"service": text}))         # no message
        c.send("calc", {"command": text})                 # not an RPC message
        c.send_raw(b"\x1b[31m\r\nFORGED \xff", binary=True)
    assert c.call("calc", "add", {"a": 1})["data"] == 1  # everything before it was handled
    assert_clean(server.log())
    c.close()


def test_bad_frames_are_escaped(server):
    c = Raw(server.port)
    c.s.sendall(frame(0x8, (1000).to_bytes(2, "big") + b"\x1b[31m\xff\r\nFORGED"))  # invalid close reason
    c.s.recv(4096)
    s, _ = handshake(server.port)
    s.sendall(frame(0x1, b"x", rsv1=True))
    s.recv(4096)
    assert_clean(server.log())


def test_refused_handshakes_are_rate_limited(server):
    before = server.log().count("\n")
    for i in range(200):
        raw_request(server.port, "/ws-session-allowed", {"Origin": f"http://evil{i}.example"})
    grown = server.log().count("\n") - before
    assert grown <= 25, server.log()[-3000:]

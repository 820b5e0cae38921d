"""SockJS streaming responses have a write deadline (issue #21, item 6).

A reader that stops reading (a tiny receive buffer, then nothing) has its
session dropped as a slow consumer once its backlog is full; its stalled
response must then lose its socket and greenlet within
``SNORKY_WRITE_TIMEOUT``, not hold them forever.  Proven on the socket: the
server closes it mid-response (the chunked body never gets its last chunk),
and by the ``write_stall_disconnects`` count, on every streaming transport
under every serving mode.
"""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest

from support.servers import API_KEY, metric, wait_metric

from .sockjs_support import envelope, request

SERVER_ENV = {"SNORKY_WRITE_TIMEOUT": "1", "SNORKY_SOCKJS_RESPONSE_LIMIT": str(1 << 30)}
STREAMS = [("POST", "xhr_streaming"), ("GET", "eventsource"), ("GET", "htmlfile?c=cb")]
OPENED = {"xhr_streaming": b"\r\no\n", "eventsource": b"data: o\r\n", "htmlfile?c=cb": b'p("o")'}


def drain(s: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Read until the server closes (True) or ``deadline``; what came last."""
    tail = b""
    s.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return tail, True
        if not chunk:
            return tail, True
        tail = (tail + chunk)[-64:]
    return tail, False


@pytest.mark.parametrize("method,transport", STREAMS)
def test_a_stalled_stream_loses_its_socket(cookie_server, method, transport):
    srv = cookie_server
    channel = "stall-" + uuid.uuid4().hex
    base = f"{srv.url}/sockjs-anon/000/{uuid.uuid4().hex[:12]}"
    stalls = metric(srv, "snorky_write_stall_disconnects_total")
    slow = metric(srv, "snorky_slow_consumer_disconnects_total")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    path = base[len(srv.url):] + "/" + transport
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Length: 0\r\n\r\n".encode())
    got = b""
    while OPENED[transport] not in got:
        chunk = s.recv(4096)  # the head, the prelude and "o": the stream is open
        assert chunk, got
        got += chunk
    sub = request("POST", base + "/xhr_send",
                  body=json.dumps([envelope("pubsub", "subscribe", {"channel": channel})]).encode())
    assert sub.status == 204
    # the reader stops reading; the app floods it until it is dropped as a slow consumer
    import requests
    big = "x" * 60000
    for _ in range(400):
        r = requests.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10,
                          json={"service": "pubsub_backend",
                                "message": {"command": "publish", "params": {"channel": channel, "message": big}}})
        assert r.status_code == 200
        # dropping the session in the middle of the broadcast breaks nothing
        assert r.json()["message"]["type"] == "response", r.text
        if metric(srv, "snorky_slow_consumer_disconnects_total") > slow:
            break
    wait_metric(srv, "snorky_slow_consumer_disconnects_total", slow + 1)
    # its stalled write is given up (generous: the timeout is 1 s)
    wait_metric(srv, "snorky_write_stall_disconnects_total", stalls + 1, timeout=30)
    tail, closed = drain(s, time.monotonic() + 30)
    s.close()
    assert closed, "the server kept the stalled stream's socket"
    assert not tail.endswith(b"0\r\n\r\n"), "the response completed: it was not cut"
    assert "Traceback" not in srv.log()

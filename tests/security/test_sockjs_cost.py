"""Bounded cost per SockJS client (issue #21, items 2 and 3, the SockJS side).

* A send body is refused for its size before it is read, and for an
  unknown session before it is read or parsed (``xhr_send``, ``jsonp_send``;
  a 10 MiB ``d=%%%...`` JSONP body gets 413 while most of it is unsent).
* The message rate counts messages, not frames or bodies: one SockJS
  WebSocket frame carrying 30,000 publishes closes with 1008 "Rate limit
  exceeded" and publishes nothing, so a subscriber on ``/ws`` is not cut
  as a slow consumer by it; the same over ``xhr_send`` and ``jsonp_send``.
* Every message inside a body is held to ``SNORKY_MAX_FRAME_SIZE``.
"""
from __future__ import annotations

import json
import socket
import urllib.parse
import uuid

import pytest
import websocket

from support.rawws import handshake, read_until, text_frame
from support.servers import WORKER_CLASSES, ServerProcess, metric

from .sockjs_support import FORM, envelope, request, sid_url

# one SockJS frame of 30,000 publishes is ~4 MB: within the frame size here, and
# read at once (the byte rate's throttling is not what these tests are about)
SERVER_ENV = {"SNORKY_MAX_FRAME_SIZE": str(8 * 1024 * 1024),
              "SNORKY_BYTE_RATE_BURST": str(16 * 1024 * 1024)}
ANON = "/sockjs-anon"


def open_session(srv) -> str:
    url = sid_url(srv, ANON)
    assert request("POST", url + "/xhr").data == b"o\n"
    return url


def head_after_partial_body(srv, path: str, headers: dict, length: int, part: bytes,
                            timeout: float = 20.0) -> tuple[int, int]:
    """Send a request announcing ``length`` body bytes but only ``part`` of
    them; the status the server answers while the rest is unsent (0: none
    within ``timeout``), and how much more it would still have taken."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}",
                 f"Content-Length: {length}", *(f"{k}: {v}" for k, v in headers.items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + part)
        try:
            got = read_until(s, b"\r\n")
        except (TimeoutError, ConnectionResetError):
            return 0, length - len(part)
        status = int(got.split()[1]) if got.startswith(b"HTTP/") else 0
        return status, length - len(part)
    finally:
        s.close()


@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
def test_a_10_mib_body_is_refused_before_it_is_read(cookie_server, transport):
    url = open_session(cookie_server)
    path = url[len(cookie_server.url):] + "/" + transport
    body_start = b"d=" + b"%" * 65536 if transport == "jsonp_send" else b'["' + b"x" * 65536
    headers = FORM if transport == "jsonp_send" else {}
    status, unsent = head_after_partial_body(cookie_server, path, headers, 10 * 1024 * 1024, body_start)
    assert status == 413 and unsent > 9 * 1024 * 1024
    # the session is untouched
    assert request("POST", url + "/xhr_send", body=b'["1"]').status == 204


def test_a_chunked_body_is_cut_at_the_limit(cookie_server):
    url = open_session(cookie_server)
    u = urllib.parse.urlsplit(url + "/xhr_send")
    s = socket.create_connection(("127.0.0.1", cookie_server.port), timeout=20)
    try:
        s.sendall(f"POST {u.path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        status = 0
        chunk = b"x" * 65536
        for _ in range(160):  # up to 10 MiB, stopping at the answer
            try:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                break
            s.settimeout(0.0)
            try:
                got = s.recv(4096)
            except BlockingIOError:
                got = b""
            except OSError:
                break
            finally:
                s.settimeout(20)
            if got:
                status = int(got.split()[1])
                break
        if not status:
            s.sendall(b"0\r\n\r\n")
            got = s.recv(4096)
            status = int(got.split()[1]) if got.startswith(b"HTTP/") else 0
        assert status == 413
    finally:
        s.close()


@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
def test_an_unknown_session_is_refused_before_its_body(cookie_server, transport):
    url = sid_url(cookie_server, ANON)  # never opened
    path = url[len(cookie_server.url):] + "/" + transport
    headers = FORM if transport == "jsonp_send" else {}
    status, unsent = head_after_partial_body(cookie_server, path, headers, 200 * 1024, b'["')
    assert status == 404 and unsent > 100 * 1024
    # a whole broken body: "not found", not a parse error (the body is never parsed)
    r = request("POST", url + "/" + transport, headers, b"d=%5B%22x" if headers else b'["x')
    assert (r.status, r.data) == (404, b"Session not found.")


def test_a_percent_flood_in_jsonp_send_is_answered(cookie_server):
    url = open_session(cookie_server)
    r = request("POST", url + "/jsonp_send", FORM, b"d=" + b"%" * (200 * 1024))
    assert r.status == 500 and b"Broken JSON encoding." in r.data
    # other fields are not decoded; the first d= is the body
    who = urllib.parse.quote(json.dumps([envelope("who", "whoami", call_id=5)])).encode()
    r = request("POST", url + "/jsonp_send", FORM, b"a=%%&d=" + who + b"&d=%5B%22b%22%5D")
    assert r.data == b"ok"
    assert b'\\"callId\\":5' in request("POST", url + "/xhr").data


def publish(channel: str, i: int) -> str:
    return json.dumps({"service": "pubsub", "message": {"command": "publish",
                                                        "params": {"channel": channel, "message": i}}})


class Subscriber:
    """A raw /ws subscriber with a tiny receive buffer that reads nothing until asked."""

    def __init__(self, srv, channel: str) -> None:
        self.s, got = handshake(srv.port, "/ws", rcvbuf=4096, timeout=20)
        assert got.startswith(b"HTTP/1.1 101"), got
        self.buf = got.split(b"\r\n\r\n", 1)[1]
        self.s.sendall(text_frame({"service": "pubsub", "message": {
            "command": "subscribe", "params": {"channel": channel}, "callId": 1}}))
        assert self.next()["message"] == {"type": "response", "callId": 1, "data": None}

    def next(self) -> dict:
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = int.from_bytes(self.buf[2:4], "big"), 4
                if n < 127 and len(self.buf) >= at + n:
                    op, payload, self.buf = self.buf[0] & 0x0F, self.buf[at:at + n], self.buf[at + n:]
                    assert op == 1, (op, payload)
                    return json.loads(payload)
            chunk = self.s.recv(65536)
            assert chunk, "the subscriber was disconnected"
            self.buf += chunk

    def still_served(self) -> int:
        """Ask whoami; count the publishes read on the way to its answer."""
        self.s.sendall(text_frame({"service": "who", "message": {
            "command": "whoami", "params": {}, "callId": 2}}))
        published = 0
        while True:
            msg = self.next()
            if msg.get("message", {}).get("callId") == 2:
                return published
            published += 1


def test_one_websocket_frame_of_30000_messages(cookie_server):
    channel = "flood-" + uuid.uuid4().hex
    sub = Subscriber(cookie_server, channel)
    slow_before = metric(cookie_server, "snorky_slow_consumer_disconnects_total")
    ws = websocket.create_connection(
        f"{cookie_server.ws_url}{ANON}/000/{uuid.uuid4().hex[:8]}/websocket", timeout=20)
    try:
        assert ws.recv() == "o"
        ws.send(json.dumps([publish(channel, i) for i in range(30000)]))
        frames = []
        while True:
            try:
                op, data = ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                break
            frames.append((op, data))
            if op == websocket.ABNF.OPCODE_CLOSE:
                break
        assert (websocket.ABNF.OPCODE_TEXT, b'c[1008,"Rate limit exceeded"]') in frames, frames[-3:]
        assert frames[-1][0] == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frames[-1][1][:2], "big") == 1008
    finally:
        ws.close()
    published = sub.still_served()
    assert published <= 2000, published  # at most the burst, never 30,000
    assert metric(cookie_server, "snorky_slow_consumer_disconnects_total") == slow_before


@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
def test_one_body_of_many_messages(cookie_server, transport):
    url = open_session(cookie_server)
    body = json.dumps(["1"] * 5000)  # over the burst (2000), well under the body limit
    if transport == "jsonp_send":
        r = request("POST", url + "/jsonp_send", FORM, b"d=" + urllib.parse.quote(body).encode())
    else:
        r = request("POST", url + "/xhr_send", body=body.encode())
    assert r.status in (200, 204)
    assert request("POST", url + "/xhr").data == b'c[1008,"Rate limit exceeded"]\n'


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def small_frames_server(request):
    srv = ServerProcess(request.param, app="tests.security.cookie_app:app",
                        env={"SNORKY_MAX_FRAME_SIZE": "65536"})
    yield srv
    srv.stop()


@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
def test_each_message_of_a_body_is_held_to_the_frame_size(small_frames_server, transport):
    url = open_session(small_frames_server)
    body = json.dumps(["1", "x" * 70000])  # a body under the SockJS limit, one message over the frame size
    if transport == "jsonp_send":
        r = request("POST", url + "/jsonp_send", FORM, b"d=" + urllib.parse.quote(body).encode())
    else:
        r = request("POST", url + "/xhr_send", body=body.encode())
    assert r.status == 413, (r.status, r.data)
    assert request("POST", url + "/xhr").data == b'c[1009,"Message too big"]\n'

"""One client's input costs a bounded share of the worker (issue #21 item 2, WebSocket).

Before: a message could be 10 MiB (a 10 MiB ``[[],[],...]`` cost ~1.2 s and
~290 MB to parse and convert), and a reader whose socket always had input
never let another greenlet run, so a victim's call waited for seconds.  Now
the largest message is 64 KiB by default (larger: 1009), a connection's
bytes are budgeted (over ``SNORKY_BYTE_RATE_LIMIT`` its socket is read
later, TCP backpressure does the rest; counted as ``input_throttled``) and
the reader yields between reads.  Attackers send the costliest documents
that fit (lists, one-element lists, objects, nesting) to a user service
(hashable params) back to back while a victim's calls are answered.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from snorky_sync.settings import Settings
from support.rawws import Raw, frame
from support.servers import API_KEY, WORKER_CLASSES, serving
from support.wsclient import SnorkyTestClient

MAX = 64 * 1024            # the documented default largest message
VICTIM_BOUND = 2.0         # generous: each of the victim's calls is answered within it
ATTACKERS = 3
ATTACK_SECONDS = 4.0


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    yield from serving(request, request.param, "tests.integration.testapp:app")


def document(kind: str, size: int = MAX) -> bytes:
    """A call to the calculator (a user service: its params are made hashable) carrying
    ``size`` bytes of the costliest JSON of its kind; answered ``Invalid params``."""
    head = b'{"service": "calc", "message": {"callId": 0, "command": "add", "params": {"a": 1, "x": ['
    tail = b"]}}}"
    item = {"lists": b"[]", "one-element lists": b"[0]", "objects": b"{}"}.get(kind)
    if item is None:  # nesting: deeper than the parser takes
        depth = (size - len(head) - len(tail)) // 2
        body = b"[" * depth + b"]" * depth
    else:
        body = b",".join([item] * ((size - len(head) - len(tail)) // (len(item) + 1)))
    doc = head + body + tail
    return doc + b" " * (size - len(doc))  # whitespace after the document: still valid JSON


KINDS = ["lists", "one-element lists", "objects", "nesting"]


def close_code(c: Raw) -> int:
    while True:
        op, payload = c.read_frame()
        if op == 0x8:
            return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize("kind", KINDS[:3])
def test_a_message_at_the_limit_is_served(server, kind):
    c = Raw(server.port)
    doc = document(kind)
    assert len(doc) == MAX
    c.s.sendall(frame(0x1, doc))
    op, payload = c.read_frame()
    assert op == 0x1 and json.loads(payload)["message"] == {
        "type": "error", "callId": 0, "message": "Invalid params"}


@pytest.mark.parametrize("size", [MAX + 1, 1024 * 1024])
def test_a_message_over_the_limit_closes_with_1009(server, size):
    c = Raw(server.port)
    c.s.sendall(frame(0x1, document("lists", size)))
    assert close_code(c) == 1009


def test_a_fragmented_message_over_the_limit_closes_with_1009(server):
    c = Raw(server.port)
    doc = document("lists", 2 * MAX)
    c.s.sendall(frame(0x1, doc[:MAX // 2], fin=False) + frame(0x0, doc[MAX // 2:MAX], fin=False)
                + frame(0x0, doc[MAX:]))
    assert close_code(c) == 1009


class Attacker(threading.Thread):
    """Sends max-size messages back to back until told to stop; never reads."""

    def __init__(self, port: int, kind: str) -> None:
        super().__init__(daemon=True)
        self.raw = Raw(port)
        self.data = frame(0x1, document(kind))
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        s = self.raw.s
        s.settimeout(0.2)
        view = memoryview(self.data)
        while not self.stop.is_set():
            pos = 0
            while pos < len(view) and not self.stop.is_set():
                try:
                    pos += s.send(view[pos:])
                except TimeoutError:
                    continue  # the server reads slower than we send: TCP backpressure
                except OSError:
                    return
            self.sent += pos


def test_hostile_floods_do_not_stall_a_victim_and_are_throttled(server):
    s = Settings()
    victim = SnorkyTestClient(f"{server.ws_url}/ws", timeout=VICTIM_BOUND)

    def counters() -> dict:  # the test app's window into the server (it serves no /metrics)
        return victim.ok("inspect", "state")["counters"]

    before = counters()
    attackers = [Attacker(server.port, KINDS[i % len(KINDS)]) for i in range(ATTACKERS)]
    started = time.monotonic()
    for a in attackers:
        a.start()
    calls = 0
    try:
        while time.monotonic() - started < ATTACK_SECONDS:
            # each call raises if it is not answered within VICTIM_BOUND
            assert victim.call("calc", "add", {"a": calls, "b": 1})["data"] == calls + 1
            calls += 1
            time.sleep(0.05)  # a paced victim (20 calls/s), not synchronisation
    finally:
        for a in attackers:
            a.stop.set()
        for a in attackers:
            a.join(5)
    elapsed = time.monotonic() - started
    after = counters()
    read = after["bytes_in"] - before["bytes_in"]
    sent = sum(a.sent for a in attackers)
    assert calls > 0
    # throttled: the server read no more than each attacker's budget allows
    # (its burst, its rate over the attack, a read of overshoot) ...
    allowed = ATTACKERS * (s.byte_rate_burst + s.byte_rate_limit * (elapsed + 1) + 2 * 65536) + 65536
    assert read <= allowed, (read, allowed, sent)
    assert read < sent
    assert after.get("input_throttled", 0) > before.get("input_throttled", 0)
    # ... and not closed for it: every attacker is still connected
    assert after.get("rate_limited_disconnects", 0) == before.get("rate_limited_disconnects", 0)
    assert after["connections_current"] == before["connections_current"] + ATTACKERS
    for a in attackers:
        a.raw.s.close()
    victim.close()


def backend_head(port: int, key: str | None, length: int) -> bytes:
    """A backend POST's head announcing ``length`` bytes of body, none sent;
    the status line of what the server answers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    auth = f"X-Backend-Key: {key}\r\n" if key is not None else ""
    s.sendall((f"POST /backend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"{auth}Content-Length: {length}\r\n\r\n").encode())
    try:
        return s.recv(4096).split(b"\r\n", 1)[0]
    finally:
        s.close()


@pytest.mark.parametrize("key", [None, "a-wrong-key-of-some-length"])
def test_backend_refuses_an_unauthenticated_body_before_reading_it(server, key):
    # answered while the body has not even been sent: it was neither read nor parsed
    assert backend_head(server.port, key, 10 * 1024 * 1024).startswith(b"HTTP/1.1 401")


def test_backend_refuses_an_oversized_body_before_reading_it(server):
    assert backend_head(server.port, API_KEY, 10 * 1024 * 1024).startswith(b"HTTP/1.1 413")


def test_backend_messages_nested_too_deep_get_invalid_params(server):
    deep = "[" * 1000 + "]" * 1000
    body = ('{"service": "pubsub_backend", "message": {"command": "publish", "params": '
            f'{{"channel": "c", "message": {deep}}}, "callId": 5}}}}')
    answer = requests.post(server.url + "/backend", data=body, timeout=10,
                           headers={"X-Backend-Key": API_KEY, "Content-Type": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["message"] == {"type": "error", "callId": 5, "message": "Invalid params"}

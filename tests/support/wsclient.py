"""A small synchronous WebSocket test client speaking the Snorky envelope."""
from __future__ import annotations

import itertools
import json
import time

import websocket  # websocket-client


class SnorkyTestClient:
    """Wraps a real WebSocket connection; keeps notifications apart from answers."""

    def __init__(self, url: str, timeout: float = 10.0, **kwargs):
        self.ws = websocket.create_connection(url, timeout=timeout, **kwargs)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self.notifications: list[dict] = []   # envelopes that are not answers
        self.received: list[dict] = []        # every envelope, in arrival order

    def send_raw(self, data, binary: bool = False) -> None:
        if binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def send(self, service: str, message) -> None:
        self.ws.send(json.dumps({"service": service, "message": message}))

    def recv(self, timeout: float | None = None) -> dict:
        self.ws.settimeout(self.timeout if timeout is None else timeout)
        raw = self.ws.recv()
        if raw == "":  # websocket-client's way of saying the server sent a close frame
            raise websocket.WebSocketConnectionClosedException("closed by the server")
        env = json.loads(raw)
        self.received.append(env)
        return env

    def call(self, service: str, command: str, params: dict | None = None, call_id=None) -> dict:
        """Send a request and return its answer message, keeping notifications."""
        if call_id is None:
            call_id = next(self._ids)
        self.send(service, {"command": command, "params": params or {}, "callId": call_id})
        deadline = time.monotonic() + self.timeout
        while True:
            env = self.recv(max(0.01, deadline - time.monotonic()))
            msg = env["message"]
            if isinstance(msg, dict) and msg.get("type") in ("response", "error") \
                    and msg.get("callId") == call_id:
                return msg
            self.notifications.append(env)

    def ok(self, service: str, command: str, params: dict | None = None):
        msg = self.call(service, command, params)
        assert msg["type"] == "response", msg
        return msg["data"]

    def next_notification(self, timeout: float | None = None) -> dict:
        if self.notifications:
            return self.notifications.pop(0)
        return self.recv(timeout)

    def wait_for(self, predicate, timeout: float | None = None) -> dict:
        """The first notification message satisfying ``predicate`` (earlier ones are dropped)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.next_notification(max(0.01, deadline - time.monotonic()))["message"]
            if isinstance(msg, dict) and predicate(msg):
                return msg

    def next_message(self, channel=None, timeout: float | None = None):
        """What the next PubSub message brings (on ``channel``, when given; earlier
        notifications are dropped)."""
        return self.wait_for(lambda m: m.get("type") == "message" and (channel is None or m.get("channel") == channel),
                             timeout)["message"]

    def nothing_before(self, marker, timeout: float | None = None) -> dict:
        """Absence proven by a marker, not by waiting: the caller made the server
        send a message on the same path *after* whatever must not arrive (a later
        publish on a channel this client hears, a later delta, a later call's
        answer); read until the message ``marker(message)`` accepts, and fail on
        anything before it, kept notifications included.  Returns the marker."""
        if self.notifications:
            raise AssertionError(f"expected nothing before the marker, got {self.notifications[0]!r}")
        env = self.recv(timeout)
        msg = env["message"]
        if isinstance(msg, dict) and marker(msg):
            return msg
        raise AssertionError(f"expected nothing before the marker, got {env!r}")

    def answers_next(self, service: str, command: str, params: dict | None = None) -> dict:
        """Send a call and return its answer, which must be the next message: the
        server answers a connection's calls in order, so anything an earlier frame
        caused would come first.  (Absence proven by a marker: see nothing_before.)"""
        call_id = f"marker-{next(self._ids)}"
        self.send(service, {"command": command, "params": params or {}, "callId": call_id})
        return self.nothing_before(lambda m: m.get("type") in ("response", "error") and m.get("callId") == call_id)

    def expect_silence(self, seconds: float = 0.3) -> None:
        """Assert nothing arrives within ``seconds`` (bounded wait for absence;
        where the server can send a later message on the same path, prefer
        nothing_before / answers_next: they prove it instead of waiting)."""
        self.ws.settimeout(seconds)
        try:
            data = self.ws.recv()
        except (TimeoutError, websocket.WebSocketTimeoutException):
            return
        raise AssertionError(f"expected silence, got {data!r}")

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


def close_of(ws, timeout: float = 15) -> tuple[int, str]:
    """Read a websocket-client connection until the server's close frame: (code, reason)."""
    ws.settimeout(timeout)
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big"), data[2:].decode()


def refusal(url: str, wait: float = 5) -> int | None:
    """How a handshake to ``url`` is refused: its HTTP status, or the close code
    sent right after the upgrade (gevent-websocket's worker); None if it was let
    in (nothing came within ``wait`` seconds: the server sends nothing unasked)."""
    try:
        ws = websocket.create_connection(url, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.settimeout(wait)
    try:
        opcode, data = ws.recv_data(control_frame=True)
    except websocket.WebSocketTimeoutException:
        return None
    finally:
        ws.close()
    assert opcode == websocket.ABNF.OPCODE_CLOSE, opcode
    return int.from_bytes(data[:2], "big")

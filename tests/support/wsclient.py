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

    def expect_silence(self, seconds: float = 0.3) -> None:
        """Assert nothing arrives within ``seconds`` (bounded wait for absence)."""
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

"""A small synchronous SockJS client over one named transport, for tests that
must hold on every SockJS transport (docs/architecture.md: every rule on every
transport and serving mode): ``websocket``,
``xhr_streaming``, ``eventsource`` (streaming receivers, sends by
``xhr_send``) and ``xhr`` (polling).

::

    s = SockJSClient(server, "/sockjs", "xhr_streaming", query="token=...")
    s.call("who", "whoami")            # the answer message
    s.close_frame()                    # 'c[4001,"Token expired"]'

Each read waits on the server (a frame, a poll's answer) with a timeout,
never on a clock.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import requests
import websocket
from sockjs.rawhttp import Stream

__all__ = ["SockJSClient", "TRANSPORTS"]

#: every receiving transport of a SockJS session that a test can drive
TRANSPORTS = ("websocket", "xhr_streaming", "eventsource", "xhr")


class SockJSClient:
    """One SockJS session on ``transport``; opened (its ``o`` frame read) on creation.

    ``headers`` (e.g. ``Cookie``, ``Origin``) go with every request of the
    session, the WebSocket handshake included."""

    def __init__(self, server, path: str = "/sockjs", transport: str = "websocket",
                 query: str = "", headers: dict | None = None, timeout: float = 15.0) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}")
        self.transport = transport
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.base = f"{server.url}{path}/000/{uuid.uuid4().hex[:12]}"
        self.query = f"?{query}" if query else ""
        self.notifications: list[dict] = []   # envelopes that are not the answer awaited
        self._pending: list[str] = []          # frames read, not yet handed out
        self._buffer = b""
        self._ids = 0
        self.ws: websocket.WebSocket | None = None
        self.stream: Stream | None = None
        if transport == "websocket":
            ws_url = self.base.replace("http://", "ws://", 1) + "/websocket" + self.query
            self.ws = websocket.create_connection(ws_url, timeout=timeout,
                                                  header=[f"{k}: {v}" for k, v in self.headers.items()])
        elif transport != "xhr":
            method = "POST" if transport == "xhr_streaming" else "GET"
            self.stream = Stream(method, f"{self.base}/{transport}{self.query}", self.headers,
                                 timeout=timeout)
            assert self.stream.status == 200, self.stream.status
        opened = self.next_frame()
        assert opened == "o", opened

    # -- frames --------------------------------------------------------------------------
    def _frames(self) -> Iterator[str]:
        """The frames of the next read from the server (heartbeats included)."""
        if self.ws is not None:
            self.ws.settimeout(self.timeout)
            data = self.ws.recv()
            if data == "":
                raise EOFError("the SockJS WebSocket was closed without a close frame")
            yield data
        elif self.stream is None:
            r = requests.post(f"{self.base}/xhr{self.query}", headers=self.headers,
                              timeout=self.timeout)
            assert r.status_code == 200, (r.status_code, r.text)
            yield from (line for line in r.text.split("\n") if line)
        else:
            chunk = self.stream.read()
            if not chunk:
                raise EOFError(f"the {self.transport} response ended")
            self._buffer += chunk
            sep = b"\r\n\r\n" if self.transport == "eventsource" else b"\n"
            while sep in self._buffer:
                line, _, self._buffer = self._buffer.partition(sep)
                text = line.decode()
                if self.transport == "eventsource":
                    text = text.lstrip("\r\n")  # the response's leading \r\n
                    if not text.startswith("data: "):
                        continue
                    text = text[len("data: "):]
                if text:
                    yield text

    def next_frame(self) -> str:
        """The next frame other than a heartbeat (``o``, ``a[...]``, ``c[...]``)."""
        while not self._pending:
            self._pending.extend(f for f in self._frames() if not f.startswith("h"))
        return self._pending.pop(0)

    def close_frame(self) -> str:
        """Read until the session's close frame and return it (``c[code,"reason"]``);
        messages before it are kept in ``notifications``."""
        while True:
            frame = self.next_frame()
            if frame.startswith("c"):
                return frame
            if frame.startswith("a"):
                self.notifications.extend(json.loads(m) for m in json.loads(frame[1:]))

    # -- the Snorky envelope -------------------------------------------------------------
    def send(self, service: str, message) -> None:
        body = json.dumps([json.dumps({"service": service, "message": message})])
        if self.ws is not None:
            self.ws.send(body)
            return
        r = requests.post(f"{self.base}/xhr_send{self.query}", data=body, headers=self.headers,
                          timeout=self.timeout)
        assert r.status_code == 204, (r.status_code, r.text)

    def call(self, service: str, command: str, params: dict | None = None) -> dict:
        """Send a request and return its answer message (other messages are kept)."""
        self._ids += 1
        call_id = self._ids
        self.send(service, {"command": command, "params": params or {}, "callId": call_id})
        while True:
            frame = self.next_frame()
            if frame.startswith("c"):
                raise EOFError(f"session closed before the answer: {frame}")
            raws = json.loads(frame[1:]) if frame.startswith("a") else []
            for i, raw in enumerate(raws):
                env = json.loads(raw)
                msg = env["message"]
                if isinstance(msg, dict) and msg.get("type") in ("response", "error") \
                        and msg.get("callId") == call_id:
                    if i + 1 < len(raws):  # after the answer in the same frame: read next
                        self._pending.insert(0, "a" + json.dumps(raws[i + 1:]))
                    return msg
                self.notifications.append(env)

    def wait_for(self, predicate) -> dict:
        """The first notification message (kept or arriving) satisfying ``predicate``;
        each read waits on the server (``timeout``)."""
        while True:
            for i, env in enumerate(self.notifications):
                msg = env["message"]
                if isinstance(msg, dict) and predicate(msg):
                    del self.notifications[:i + 1]
                    return msg
            self.notifications.clear()
            frame = self.next_frame()
            if frame.startswith("c"):
                raise EOFError(f"session closed: {frame}")
            if frame.startswith("a"):
                self.notifications.extend(json.loads(m) for m in json.loads(frame[1:]))

    def ok(self, service: str, command: str, params: dict | None = None):
        msg = self.call(service, command, params)
        assert msg["type"] == "response", msg
        return msg.get("data")

    def close(self) -> None:
        try:
            if self.ws is not None:
                self.ws.close()
            elif self.stream is not None:
                self.stream.close()
        except Exception:
            pass


def every_transport(check) -> None:
    """``check(transport)`` for every SockJS transport at once, each in a
    thread (tests waiting for a deadline wait once); the first failure is
    raised, naming its transport."""
    from concurrent.futures import ThreadPoolExecutor

    def named(transport):
        try:
            check(transport)
        except Exception as exc:
            raise AssertionError(f"{transport}: {exc!r}") from exc
    with ThreadPoolExecutor(len(TRANSPORTS)) as pool:
        for future in [pool.submit(named, t) for t in TRANSPORTS]:
            future.result()

"""What the SockJS attack modules share: a logged-in victim, SockJS URLs and
envelopes (the ``cookie_server`` fixture is in conftest.py)."""
from __future__ import annotations

import json
import uuid

import requests
from sockjs.rawhttp import Stream, request

__all__ = ["login", "sid_url", "envelope", "messages", "XhrSession", "Stream", "request", "FORM", "EVIL"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVIL = "http://evil.example"


def login(srv, user: str) -> str:
    """The ``Cookie`` header of ``user``'s logged-in browser."""
    r = requests.get(f"{srv.url}/login/{user}", timeout=10)
    assert r.status_code == 200
    return "; ".join(f"{k}={v}" for k, v in r.cookies.items())


def sid_url(srv, path: str = "/sockjs") -> str:
    return f"{srv.url}{path}/000/{uuid.uuid4().hex[:12]}"


def envelope(service: str, command: str, params: dict | None = None, call_id: int = 1) -> str:
    return json.dumps({"service": service,
                       "message": {"command": command, "params": params or {}, "callId": call_id}})


def messages(data: bytes) -> list:
    """The envelopes of the ``a[...]`` frames in an xhr / xhr_streaming body."""
    out = []
    for line in data.split(b"\n"):
        if line.startswith(b"a["):
            out.extend(json.loads(m) for m in json.loads(line[1:]))
    return out


class XhrSession:
    """A page's SockJS session over xhr polling: ``send`` posts envelopes
    to ``xhr_send``, ``poll`` reads the next ``xhr`` body's envelopes.
    ``query`` (``?token=...``) goes on every request."""

    def __init__(self, http: requests.Session, srv, query: str = "") -> None:
        self.http, self.base, self.query = http, sid_url(srv), query
        self.headers = {"Origin": srv.url}

    def post(self, path: str, body: str | None = None) -> requests.Response:
        return self.http.post(f"{self.base}/{path}{self.query}", headers=self.headers,
                              timeout=30, data=body)

    def open(self) -> None:
        assert self.post("xhr").text == "o\n"

    def send(self, *envelopes: str) -> None:
        assert self.post("xhr_send", json.dumps(list(envelopes))).status_code == 204

    def poll(self) -> list:
        return messages(self.post("xhr").content)

    def until_answered(self, count: int = 1) -> list:
        """Every envelope polled until ``count`` answers (responses or errors) came."""
        got: list = []
        while len([m for m in got if m["message"].get("type") in ("response", "error")]) < count:
            got.extend(self.poll())
        return got

    def next_envelopes(self) -> list:
        """The envelopes of the next poll that brings any."""
        got: list = []
        while not got:
            got = self.poll()
        return got

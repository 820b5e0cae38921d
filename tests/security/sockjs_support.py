"""What the SockJS attack modules share: a logged-in victim, SockJS URLs and
envelopes (the ``cookie_server`` fixture is in conftest.py)."""
from __future__ import annotations

import json
import uuid

import requests
from sockjs.rawhttp import Stream, request

__all__ = ["login", "sid_url", "envelope", "Stream", "request", "FORM", "EVIL"]

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

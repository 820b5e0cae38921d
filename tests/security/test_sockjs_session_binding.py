"""A SockJS session id is not a bearer credential (issue #21, item 7).

The victim opens a session; the attacker knows its id (logs, a shared
link, a proxy) but not the victim's cookie, token or address.  With the id
alone it must neither post into the session nor read what is pending for
it, on any transport, and ``xhr_send`` of ``[]`` must not tell whether the
id exists.  Run on the three kinds of SockJS endpoint (cookie identity,
connection tokens, anonymous: bound to the client address, here given by a
trusted proxy's X-Forwarded-For) under every serving mode.
"""
from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest
import requests

from .sockjs_support import FORM, Stream, envelope, login, request

SERVER_ENV = {"SNORKY_TRUSTED_PROXIES": "127.0.0.1"}
KINDS = ["cookie", "token", "anonymous"]
RECEIVERS = [("POST", "xhr"), ("POST", "xhr_streaming"), ("GET", "eventsource"),
             ("GET", "htmlfile?c=cb"), ("GET", "jsonp?c=cb")]


class Party:
    """Who sends a request: the endpoint path, a query and headers."""

    def __init__(self, srv, kind: str, who: str | None, addr: str = "10.0.0.1") -> None:
        self.srv = srv
        self.headers = {"Origin": srv.url, "Referer": srv.url + "/page"}
        self.query = ""
        if kind == "cookie":
            self.path = "/sockjs"
            if who:
                self.headers["Cookie"] = login(srv, who)
        elif kind == "token":
            self.path = "/sockjs-token"
            if who:
                self.query = "token=" + requests.get(f"{srv.url}/token/{who}", timeout=10).text
        else:
            self.path = "/sockjs-anon"
            self.headers["X-Forwarded-For"] = addr

    def url(self, sid: str, transport: str) -> str:
        sep = "&" if "?" in transport else "?"
        return (f"{self.srv.url}{self.path}/000/{sid}/{transport}"
                + (sep + self.query if self.query else ""))

    def send(self, sid: str, msgs: list[str], transport: str = "xhr_send"):
        body = json.dumps(msgs).encode()
        if transport == "jsonp_send":
            return request("POST", self.url(sid, transport), {**self.headers, **FORM},
                           b"d=" + urllib.parse.quote(body).encode())
        return request("POST", self.url(sid, transport), self.headers, body)

    def poll(self, sid: str) -> bytes:
        return request("POST", self.url(sid, "xhr"), self.headers).data


def parties(srv, kind):
    victim = Party(srv, kind, "alice", "10.0.0.1")
    if kind == "anonymous":
        return victim, [Party(srv, kind, None, "10.0.0.2")]
    return victim, [Party(srv, kind, None, "10.0.0.1"), Party(srv, kind, "bob", "10.0.0.1")]


def open_session(victim) -> tuple[str, str]:
    """The victim's session with something pending for it: (sid, the secret)."""
    sid = uuid.uuid4().hex[:12]
    secret = "secret-" + uuid.uuid4().hex
    channel = "ch-" + uuid.uuid4().hex
    assert victim.poll(sid) == b"o\n"
    r = victim.send(sid, [envelope("pubsub", "subscribe", {"channel": channel}, 1),
                          envelope("pubsub", "publish", {"channel": channel, "message": secret}, 2)])
    assert r.status == 204, (r.status, r.data)
    return sid, secret


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
def test_the_id_alone_cannot_send(cookie_server, kind, transport):
    victim, attackers = parties(cookie_server, kind)
    sid = uuid.uuid4().hex[:12]
    assert victim.poll(sid) == b"o\n"
    for attacker in attackers:
        r = attacker.send(sid, [envelope("who", "whoami", call_id=99)], transport)
        assert (r.status, r.data) == (404, b"Session not found."), (kind, r.status, r.data)
    assert victim.send(sid, [envelope("who", "whoami", call_id=7)], transport).status in (200, 204)
    got = victim.poll(sid)
    assert b'\\"callId\\":7' in got and b'\\"callId\\":99' not in got, got


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method,transport", RECEIVERS)
def test_the_id_alone_cannot_read(cookie_server, kind, method, transport):
    victim, attackers = parties(cookie_server, kind)
    sid, secret = open_session(victim)
    for attacker in attackers:
        s = Stream(method, attacker.url(sid, transport), attacker.headers, timeout=10)
        got = b""
        for _ in range(2):  # the streaming prelude, then the first frame
            chunk = s.read() if s.status == 200 else s.body()
            got += chunk
            if not chunk or chunk.strip(b"h\n\r "):
                break
        s.close()
        assert secret.encode() not in got, (kind, transport, got[:300])
    # the victim's own poll still holds what was pending for it
    assert secret.encode() in victim.poll(sid)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_sends_do_not_tell_whether_an_id_exists(cookie_server, kind):
    victim, attackers = parties(cookie_server, kind)
    sid = uuid.uuid4().hex[:12]
    assert victim.poll(sid) == b"o\n"
    assert victim.send(sid, []).status == 204  # the owner's own empty send
    never = uuid.uuid4().hex[:12]
    for attacker in attackers:
        for transport in ("xhr_send", "jsonp_send"):
            existing = attacker.send(sid, [], transport)
            missing = attacker.send(never, [], transport)
            assert (existing.status, existing.data) == (missing.status, missing.data) == \
                (404, b"Session not found."), (kind, transport)

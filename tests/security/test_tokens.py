"""Single-use connection tokens are single use on every transport (issue #21 item 14).

docs/security.md said a connection token belongs to one connection, while a
token could open any number of them until it expired.  Now the docs say
what holds (a token is a bearer credential until it expires, so snorky.js
can reconnect with it) and ``ConnectionTokens(single_use=True)`` makes a
token open one connection only.  Here, under every serving mode, a
single-use token opens one WebSocket or one SockJS session; a second
handshake with it, by the same party or a thief, on either transport, is
refused (403 ``Token already used``; a 1008 close under the gevent-websocket
worker, which upgrades before the app runs), and the first connection
keeps working.
"""
from __future__ import annotations

import json

import pytest
import requests

from support.rawws import handshake
from support.wsclient import SnorkyTestClient

from .sockjs_support import envelope, messages, request, sid_url


def single_token(srv, who: str) -> str:
    return requests.get(f"{srv.url}/token-single/{who}", timeout=10).text


def ws_refusal(srv, token: str) -> bytes:
    """How a WebSocket handshake on /ws-single with ``token`` is answered: the
    status line and body of a refusal, or (after a 101) the close frame."""
    sock, got = handshake(srv.port, f"/ws-single?token={token}")
    try:
        sock.settimeout(10)
        while True:
            head, _, rest = got.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):  # refused before the upgrade
                length = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length:")]
                if rest and len(rest) >= (length or [0])[0]:
                    return got  # its status and reason
            elif len(rest) >= 2 and len(rest) >= 2 + (rest[1] & 0x7F):
                return rest  # the server's first frame
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk
    finally:
        sock.close()


def sockjs_open(srv, token: str):
    url = sid_url(srv, "/sockjs-single")
    return url, request("POST", f"{url}/xhr?token={token}", {"Origin": srv.url})


@pytest.mark.parametrize("first,second", [("ws", "ws"), ("ws", "sockjs"), ("sockjs", "ws"),
                                          ("sockjs", "sockjs")])
def test_a_single_use_token_opens_one_connection(cookie_server, first, second):
    srv = cookie_server
    token = single_token(srv, "alice")
    ws = None
    if first == "ws":
        ws = SnorkyTestClient(f"{srv.ws_url}/ws-single?token={token}")
        assert ws.call("who", "whoami")["data"] == "alice"
    else:
        url, opened = sockjs_open(srv, token)
        assert opened.status == 200 and opened.data.startswith(b"o"), opened.data
    try:
        if second == "ws":
            refusal = ws_refusal(srv, token)
            if refusal.startswith(b"HTTP/"):
                assert refusal.startswith(b"HTTP/1.1 403"), refusal
            else:  # a close frame: 1008 and the reason
                assert refusal[0] == 0x88 and refusal[2:4] == (1008).to_bytes(2, "big"), refusal
            assert b"Token already used" in refusal, refusal
        else:
            _, again = sockjs_open(srv, token)
            assert again.status == 403, (again.status, again.data)
            assert b"Token already used" in again.data
        # the first connection is unaffected
        if ws is not None:
            assert ws.call("who", "whoami")["data"] == "alice"
        else:
            sent = request("POST", f"{url}/xhr_send?token={token}", {"Origin": srv.url},
                           json.dumps([envelope("who", "whoami")]).encode())
            assert sent.status == 204, (sent.status, sent.data)
            polled = request("POST", f"{url}/xhr?token={token}", {"Origin": srv.url}).data
            assert [m["message"]["data"] for m in messages(polled)] == ["alice"]
    finally:
        if ws is not None:
            ws.close()


def test_a_reusable_token_is_a_bearer_credential_until_it_expires(cookie_server):
    """The default, as docs/security.md says: the same token opens several connections."""
    token = requests.get(f"{cookie_server.url}/token/bob", timeout=10).text
    url = sid_url(cookie_server, "/sockjs-token")
    first = request("POST", f"{url}/xhr?token={token}", {"Origin": cookie_server.url})
    second = request("POST", f"{sid_url(cookie_server, '/sockjs-token')}/xhr?token={token}",
                     {"Origin": cookie_server.url})
    assert first.data.startswith(b"o") and second.data.startswith(b"o")

"""Token expiry enforced on live connections (issue #24 item 3): a connection
whose token expires is closed with 4001 ``Token expired`` — on WebSocket and
on SockJS (``c[4001,"Token expired"]``) — when its ``authenticate`` hook opts
in (``expire_connections=True``); otherwise it lives on, as in Snorky 0.1.

Under every serving mode (tests/support/tokens.py) and on every SockJS
transport (tests/support/sockjs_client.py).  Each test waits on the close
itself (with a timeout), never on a clock.
"""
from __future__ import annotations

import pytest

from snorky_sync.auth import ConnectionTokens
from support.sockjs_client import SockJSClient, every_transport
from support.tokens import MODES, SECRET, hs256, token_server
from support.wsclient import SnorkyTestClient, close_of


@pytest.fixture(scope="module", params=MODES)
def server(request):
    yield from token_server(request)


def test_expired_jwt_closes_the_connection_with_4001(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws?token={hs256('ann', ttl=2)}")
    keep = SnorkyTestClient(f"{server.ws_url}/ws-keep?token={hs256('bob', ttl=2)}")
    assert c.ok("who", "whoami") == "ann"
    c.ok("pubsub", "subscribe", {"channel": "news"})
    assert close_of(c.ws) == (4001, "Token expired")
    # the same kind of token at an endpoint that did not opt in: still open, well past its exp
    assert keep.ok("who", "whoami") == "bob"
    keep.close()


def test_expired_connection_token_closes_the_connection(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws-tok?token={ConnectionTokens(SECRET).create('cy')}")
    assert c.ok("who", "whoami") == "cy"
    assert close_of(c.ws) == (4001, "Token expired")


def test_token_without_exp_sets_no_expiry(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws?token={hs256('dee')}")
    other = SnorkyTestClient(f"{server.ws_url}/ws?token={hs256('eve', ttl=1)}")
    assert close_of(other.ws) == (4001, "Token expired")  # the endpoint's expiries ran
    assert c.ok("who", "whoami") == "dee"
    c.close()


def test_sockjs_session_closes_with_4001(server):
    """Every SockJS transport: the session's receiver gets c[4001,...] at the
    token's exp (answers before it arrive as usual). The transports run at
    once, each in a thread: one expiry to wait for, not one each."""
    def one(transport):
        s = SockJSClient(server, "/sockjs", transport, query=f"token={hs256('fay', ttl=2)}")
        try:
            assert s.ok("who", "whoami") == "fay", transport
            assert s.close_frame() == 'c[4001,"Token expired"]', transport
        finally:
            s.close()
    every_transport(one)

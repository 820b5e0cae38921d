"""The in-band token refresh (issue #24 item 3, docs/protocol.md section 6): a
connection whose token expires (``expire_connections=True``) sends
``{"service": "token", "message": {"command": "refresh", "params":
{"token": ...}}}`` and stays open past its old expiry with its subscriptions
and history offsets; unrefreshed it is closed with 4001; a token of another
identity is refused (``Not authorized``) and the old expiry still holds.

"Past the old expiry" is proven by a witness, not by a clock: a connection
whose token expires one second after the refreshed one's old token, left
unrefreshed, is closed with 4001 first.
"""
from __future__ import annotations

import time
import uuid

import pytest

from snorky_sync import ServiceRegistry
from snorky_sync.auth import ConnectionTokens, JWTTokens
from snorky_sync.endpoints.access import Authenticated, Reject
from snorky_sync.services.pubsub import PubSubService
from snorky_sync.services.token_refresh import RefreshingTarget, with_token_refresh
from support.sockjs_client import SockJSClient, every_transport
from support.tokens import MODES, SECRET, hs256, token_server
from support.wsclient import SnorkyTestClient, close_of


@pytest.fixture(scope="module", params=MODES)
def server(request):
    yield from token_server(request)


def token(sub: str, exp: int) -> str:
    return hs256(sub, exp)


def refresh(client: SnorkyTestClient, tok: str) -> dict:
    return client.call("token", "refresh", {"token": tok})


def test_refreshed_connection_outlives_its_old_token_with_subscription_and_offsets(server):
    soon = int(time.time()) + 2
    later = int(time.time()) + 120
    ann = SnorkyTestClient(f"{server.ws_url}/ws?token={token('ann', soon)}")
    witness = SnorkyTestClient(f"{server.ws_url}/ws?token={token('wit', soon + 1)}")
    pub = SnorkyTestClient(f"{server.ws_url}/ws?token={token('pub', later)}")
    channel = f"news-{uuid.uuid4().hex[:8]}"
    first = ann.ok("pubsub", "subscribe", {"channel": channel})
    assert first["offset"] == 0
    pub.ok("pubsub", "publish", {"channel": channel, "message": "one"})
    msg = ann.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel)
    assert (msg["message"], msg["offset"]) == ("one", 1)

    answer = refresh(ann, token("ann", later))
    assert (answer["type"], answer["data"]) == ("response", {"expires": later})

    # the witness (same endpoint, expiring a second after ann's old token) is closed unrefreshed
    assert close_of(witness.ws) == (4001, "Token expired")
    # ann is past its old expiry, still open, still subscribed, its offsets continuing
    pub.ok("pubsub", "publish", {"channel": channel, "message": "two"})
    msg = ann.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel)
    assert (msg["message"], msg["offset"], msg["epoch"]) == ("two", 2, first["epoch"])
    assert ann.ok("who", "whoami") == "ann"
    for c in (ann, pub):
        c.close()


def test_refresh_with_another_identity_is_refused_and_the_old_expiry_holds(server):
    soon = int(time.time()) + 2
    later = int(time.time()) + 120
    bob = SnorkyTestClient(f"{server.ws_url}/ws?token={token('bob', soon)}")
    answer = refresh(bob, token("mallory", later))
    assert (answer["type"], answer["message"]) == ("error", "Not authorized")
    answer = refresh(bob, "not-a-token")
    assert (answer["type"], answer["message"]) == ("error", "Invalid token")
    answer = refresh(bob, token("bob", int(time.time()) - 60))
    assert (answer["type"], answer["message"]) == ("error", "Token expired")
    assert bob.ok("who", "whoami") == "bob"
    assert close_of(bob.ws) == (4001, "Token expired")


def test_no_token_service_where_the_hook_does_not_end_connections(server):
    keep = SnorkyTestClient(f"{server.ws_url}/ws-keep?token={token('cy', int(time.time()) + 120)}")
    keep.send("token", {"command": "refresh", "params": {"token": "x"}, "callId": "r"})
    # unknown service: dropped unanswered, so the next answer is whoami's
    assert keep.answers_next("who", "whoami")["data"] == "cy"
    keep.close()


def test_sockjs_refresh(server):
    """Every SockJS transport (at once, each in a thread: one expiry to wait
    for): the refresh keeps the session and its subscription past the old
    expiry (a witness expiring a second later is closed first), the next
    publish arriving with the next offset."""
    every_transport(lambda transport: sockjs_refresh(server, transport))


def sockjs_refresh(server, transport):
    soon = int(time.time()) + 2
    later = int(time.time()) + 120
    witness = SnorkyTestClient(f"{server.ws_url}/ws?token={token('wit', soon + 1)}")
    pub = SnorkyTestClient(f"{server.ws_url}/ws?token={token('pub', later)}")
    s = SockJSClient(server, "/sockjs", transport, query=f"token={token('dee', soon)}")
    try:
        channel = f"news-{uuid.uuid4().hex[:8]}"
        first = s.ok("pubsub", "subscribe", {"channel": channel})
        assert s.call("token", "refresh", {"token": token("dee", later)})["data"] == {"expires": later}
        assert close_of(witness.ws) == (4001, "Token expired")
        pub.ok("pubsub", "publish", {"channel": channel, "message": "after"})
        got = s.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel)
        assert (got["message"], got["offset"], got["epoch"]) == ("after", 1, first["epoch"])
        assert s.ok("who", "whoami") == "dee"
    finally:
        s.close()
        pub.close()


# -- without a server: which hooks refresh, and the reserved name --

def test_connection_tokens_refresh_returns_the_expiry():
    tokens = ConnectionTokens(SECRET, max_age=60, expire_connections=True)
    before = time.time()
    checked = tokens.refresh(tokens.create("ann"))
    assert isinstance(checked, Authenticated) and checked.identity == "ann"
    assert before - 1 <= checked.expires - 60 <= time.time()
    with pytest.raises(Reject):
        tokens.refresh("forged.token.value")


def test_refresh_is_offered_only_where_connections_expire():
    registry = ServiceRegistry([PubSubService("token")])  # the application's own "token" service
    assert with_token_refresh(registry, ConnectionTokens(SECRET)) is registry
    assert with_token_refresh(registry, JWTTokens(SECRET, algorithms=["HS256"])) is registry
    assert with_token_refresh(registry, lambda request: None) is registry
    assert with_token_refresh(registry, None) is registry
    with pytest.raises(ValueError, match="'token'"):
        with_token_refresh(registry, ConnectionTokens(SECRET, expire_connections=True))
    plain = ServiceRegistry([PubSubService("pubsub")])
    target = with_token_refresh(plain, JWTTokens(SECRET, algorithms=["HS256"], expire_connections=True))
    assert isinstance(target, RefreshingTarget)

"""A DataSync subscription resumes only for the identity that held it (issue #21 item 15).

With the default app's resume window, a subscription whose connection drops
waits for its page to come back; anybody holding its token could take it
over (an anonymous connection resumed alice's subscription and got her
data).  Here, under every serving mode: after alice's connection drops,
bob and an anonymous connection get exactly the answer an unknown token
gets (``No such subscription``), with ``since`` or without, and receive
nothing; alice then resumes it and gets what she missed.
"""
from __future__ import annotations

import itertools

from snorky_sync.auth import ConnectionTokens
from support.waiting import wait_connections
from support.wsclient import SnorkyTestClient

SECRET = "resume-identity-secret-0123456789"
SERVER_ENV = {"SNORKY_TOKEN_SECRET": SECRET,
              "SNORKY_DATASYNC_DEALERS": "snorky_sync.demos.todos:AllTodos"}
TOKENS = ConnectionTokens(SECRET)
_n = itertools.count(1)


def connect(srv, who: str | None) -> SnorkyTestClient:
    query = f"?token={TOKENS.create(who)}" if who else ""
    return SnorkyTestClient(f"{srv.ws_url}/ws{query}")


def authorize(srv) -> str:
    reply = srv.post_backend("datasync_backend", {
        "command": "authorizeSubscription", "callId": 1,
        "params": {"items": [{"dealer": "demoTodos", "query": None}]}})
    return reply.json()["message"]["data"]


def publish(srv, title: str) -> None:
    reply = srv.post_backend("datasync_backend", {
        "command": "publishDeltas", "callId": 1,
        "params": {"deltas": [{"type": "insert", "model": "Todo",
                               "data": {"id": next(_n), "title": title}}]}})
    assert reply.json()["message"]["type"] == "response", reply.text


def delta(c: SnorkyTestClient) -> dict:
    return c.wait_for(lambda m: m.get("type") == "delta")


def wait_dropped(srv, timeout: float = 20.0) -> None:
    """Until the server has dropped every connection (the subscription is detached)."""
    wait_connections(srv, 0, timeout)


def acquire(c: SnorkyTestClient, token: str, since=None) -> dict:
    params = {"token": token} if since is None else {"token": token, "since": since}
    return c.call("datasync", "acquireSubscription", params)


def test_another_identity_cannot_resume_alices_subscription(default_server):
    srv = default_server
    token = authorize(srv)
    alice = connect(srv, "alice")
    assert acquire(alice, token)["type"] == "response"
    publish(srv, "seen by alice")
    seen = delta(alice)
    assert seen["delta"]["data"]["title"] == "seen by alice"
    alice.close()
    wait_dropped(srv)
    publish(srv, "missed by alice")  # kept for her resumption

    unknown = "0" * 32
    for who in (None, "bob"):
        thief = connect(srv, who)
        try:
            expected = acquire(thief, unknown, since=seen["seq"])
            assert expected["message"] == "No such subscription"
            for since in (seen["seq"], 0, None):
                answer = acquire(thief, token, since=since)
                assert answer == {**expected, "callId": answer["callId"]}, (who, since, answer)
            # and nothing of alice's arrives: the next thing on this connection is its own answer
            assert thief.call("datasync", "cancelSubscription", {"token": token})["message"] \
                == "No such subscription"
            assert not [n for n in thief.notifications if n["message"].get("type") == "delta"]
        finally:
            thief.close()

    alice = connect(srv, "alice")
    try:
        answer = acquire(alice, token, since=seen["seq"])
        assert answer["type"] == "response" and answer["data"]["recovered"] is True
        assert delta(alice)["delta"]["data"]["title"] == "missed by alice"
        publish(srv, "live again")
        assert delta(alice)["delta"]["data"]["title"] == "live again"
    finally:
        alice.close()


def test_an_anonymous_page_resumes_its_own_anonymous_subscription(default_server):
    """Anonymous to anonymous is the same identity (none): 0.1's bearer token."""
    srv = default_server
    token = authorize(srv)
    page = connect(srv, None)
    acquire(page, token)
    publish(srv, "one")
    seq = delta(page)["seq"]
    page.close()
    wait_dropped(srv)
    page = connect(srv, None)
    try:
        assert acquire(page, token, since=seq)["data"]["recovered"] is True
    finally:
        page.close()

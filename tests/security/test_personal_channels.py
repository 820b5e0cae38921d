"""Personal channels in the default app (issue #24 item 1): ``dialog#alice,bob``
is readable only by alice and bob.

Under every serving mode, on WebSocket, SockJS (xhr) and SockJS's
WebSocket: another identity's (or an anonymous) ``subscribe`` (PubSub) and
``join`` (Chat) are answered ``Not authorized``, with and without ``since``
(recovery), and it receives nothing of the channel: a marker published on a
channel it may read arrives first (absence proven by a marker).  The listed
identities subscribe, recover and publish as usual.
"""
from __future__ import annotations

import itertools
import json

import pytest
import requests
import websocket

from snorky_sync.auth import ConnectionTokens
from support.wsclient import SnorkyTestClient

from .sockjs_support import XhrSession, envelope, sid_url

SECRET = "personal-channels-secret-0123456789"
SERVER_ENV = {"SNORKY_TOKEN_SECRET": SECRET, "SNORKY_PUBSUB_HISTORY_SIZE": "10",
              "SNORKY_CHAT_HISTORY_SIZE": "10"}
TOKENS = ConnectionTokens(SECRET)
_ids = itertools.count()
REFUSED = "Not authorized"


def ws_as(srv, identity) -> SnorkyTestClient:
    token = "" if identity is None else f"?token={TOKENS.create(identity)}"
    return SnorkyTestClient(f"{srv.ws_url}/ws{token}")


def personal() -> str:
    """A new channel of alice and bob (the server, and its history, serve a whole module)."""
    return f"dialog{next(_ids)}#alice,bob"


def alice_has_history(srv, channel):
    """alice subscribed to channel, where bob published once: (alice, bob, since)."""
    alice, bob = ws_as(srv, "alice"), ws_as(srv, "bob")
    epoch = alice.ok("pubsub", "subscribe", {"channel": channel})["epoch"]
    bob.ok("pubsub", "publish", {"channel": channel, "message": "for alice"})
    assert alice.next_message(channel) == "for alice"
    return alice, bob, {"offset": 0, "epoch": epoch}


def publish_then_marker(bob, channel, marker):
    """Publish into channel, then into ``marker`` (a channel anyone may read)."""
    bob.ok("pubsub", "publish", {"channel": channel, "message": "second"})
    bob.ok("pubsub", "publish", {"channel": marker, "message": "marker"})


@pytest.mark.parametrize("intruder", ["eve", None])
def test_websocket_pubsub_subscribe_and_recovery_refused(default_server, intruder):
    channel = personal()
    alice, bob, since = alice_has_history(default_server, channel)
    eve = ws_as(default_server, intruder)
    try:
        eve.ok("pubsub", "subscribe", {"channel": "marker-ws"})
        for params in ({"channel": channel}, {"channel": channel, "since": since}):
            answer = eve.call("pubsub", "subscribe", params)
            assert answer == {"type": "error", "callId": answer["callId"], "message": REFUSED}
        assert eve.call("pubsub", "publish", {"channel": channel, "message": "forged"})["message"] == REFUSED
        publish_then_marker(bob, channel, "marker-ws")
        got = eve.next_notification()
        assert (got["message"]["channel"], got["message"]["message"]) == ("marker-ws", "marker")
        assert alice.next_message(channel) == "second"  # not "forged"
        # a listed identity, on a new connection, recovers what it missed
        bob2 = ws_as(default_server, "bob")
        try:
            answer = bob2.call("pubsub", "subscribe", {"channel": channel, "since": since})
            assert answer["data"]["recovered"] is True and answer["data"]["offset"] == 2
            assert [m["message"]["message"] for m in bob2.notifications] == ["for alice", "second"]
        finally:
            bob2.close()
    finally:
        for c in (alice, bob, eve):
            c.close()


def test_websocket_chat_join_and_recovery_refused(default_server):
    channel = personal()
    alice, eve = ws_as(default_server, "alice"), ws_as(default_server, "eve")
    try:
        epoch = alice.ok("chat", "join", {"channel": channel})["epoch"]
        alice.ok("chat", "send", {"channel": channel, "body": "note to self"})
        eve.ok("chat", "join", {"channel": "marker-chat"})
        for extra in ({}, {"since": {"offset": 0, "epoch": epoch}}, {"recent": 5}):
            assert eve.call("chat", "join", {"channel": channel, **extra})["message"] == REFUSED
        assert eve.call("chat", "send", {"channel": channel, "body": "x"})["message"] == "Not joined"
        alice.ok("chat", "send", {"channel": channel, "body": "again"})
        alice.ok("chat", "join", {"channel": "marker-chat"})  # eve is told of alice: the marker
        got = eve.next_notification()["message"]
        assert (got["type"], got["channel"], got["from"]) == ("presence", "marker-chat", "alice")
    finally:
        alice.close()
        eve.close()


def test_sockjs_xhr_subscribe_and_recovery_refused(default_server):
    channel = personal()
    alice, bob, since = alice_has_history(default_server, channel)
    try:
        with requests.Session() as http:
            page = XhrSession(http, default_server, f"?token={TOKENS.create('eve')}")
            page.open()
            page.send(envelope("pubsub", "subscribe", {"channel": "marker-xhr"}, 1))
            assert page.until_answered()[-1]["message"]["type"] == "response"
            page.send(envelope("pubsub", "subscribe", {"channel": channel}, 2),
                      envelope("pubsub", "subscribe", {"channel": channel, "since": since}, 3))
            assert [m["message"] for m in page.until_answered(2)] == [
                {"type": "error", "callId": 2, "message": REFUSED},
                {"type": "error", "callId": 3, "message": REFUSED}]
            publish_then_marker(bob, channel, "marker-xhr")
            assert page.next_envelopes()[0]["message"]["channel"] == "marker-xhr"
    finally:
        alice.close()
        bob.close()


def test_sockjs_websocket_subscribe_and_recovery_refused(default_server):
    channel = personal()
    alice, bob, since = alice_has_history(default_server, channel)
    url = sid_url(default_server).replace("http://", "ws://", 1)
    ws = websocket.create_connection(f"{url}/websocket?token={TOKENS.create('eve')}", timeout=10)

    def envelopes():
        frame = ws.recv()
        while not frame.startswith("a"):  # heartbeats
            frame = ws.recv()
        return [json.loads(m) for m in json.loads(frame[1:])]
    try:
        assert ws.recv() == "o"
        ws.send(json.dumps([envelope("pubsub", "subscribe", {"channel": "marker-sws"}, 1)]))
        assert envelopes()[0]["message"]["type"] == "response"
        ws.send(json.dumps([envelope("pubsub", "subscribe", {"channel": channel}, 2),
                            envelope("pubsub", "subscribe", {"channel": channel, "since": since}, 3)]))
        got = []
        while len(got) < 2:
            got.extend(envelopes())
        assert [m["message"] for m in got] == [
            {"type": "error", "callId": 2, "message": REFUSED},
            {"type": "error", "callId": 3, "message": REFUSED}]
        publish_then_marker(bob, channel, "marker-sws")
        assert envelopes()[0]["message"]["channel"] == "marker-sws"
    finally:
        ws.close()
        alice.close()
        bob.close()

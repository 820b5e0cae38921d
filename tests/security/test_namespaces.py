"""Channel namespaces in the default app (issue #24 item 1, the declarative
form), set by ``SNORKY_NAMESPACES``.

Under every serving mode, on WebSocket and SockJS (xhr): in ``staff:`` only
a connection with an identity may subscribe (anonymous: ``Not authorized``,
with and without ``since``) and receives nothing of the channel, not even
the publishes racing its refused subscribes (absence proven by a marker);
``public:`` refuses an anonymous publish, ``locked:`` every client's (the
backend still publishes); other channels stay open, as in 0.1; Chat joins
follow the same rules; ``short:`` keeps 2 messages of history where the
service keeps 10; ``room:`` keeps presence with metadata (PubSub and Chat,
the pages' commands and the backend's control.presenceStats) where the
services keep none.
"""
from __future__ import annotations

import itertools
import json
import threading

import requests

from snorky_sync.auth import ConnectionTokens
from support.wsclient import SnorkyTestClient

from .sockjs_support import XhrSession, envelope

SECRET = "namespaces-secret-0123456789abcdef"
NAMESPACES = {
    "staff": {"subscribe": "authenticated"},
    "public": {"publish": "authenticated"},
    "locked": {"publish": "nobody"},
    "closed": {"subscribe": "nobody"},
    "short": {"history_size": 2},
    "room": {"presence": True},
}
SERVER_ENV = {"SNORKY_TOKEN_SECRET": SECRET,
              "SNORKY_PUBSUB_HISTORY_SIZE": "10", "SNORKY_CHAT_HISTORY_SIZE": "10",
              "SNORKY_NAMESPACES": json.dumps(NAMESPACES)}
TOKENS = ConnectionTokens(SECRET)
REFUSED = "Not authorized"
_ids = itertools.count()


def ws_as(srv, identity=None) -> SnorkyTestClient:
    token = "" if identity is None else f"?token={TOKENS.create(identity)}"
    return SnorkyTestClient(f"{srv.ws_url}/ws{token}")


def fresh(prefix: str) -> str:
    """A new channel (the server, and its history, serve a whole module)."""
    return f"{prefix}{next(_ids)}"


def is_marker(channel):
    return lambda m: m.get("type") == "message" and m.get("channel") == channel


def test_websocket_subscribe_and_recovery_refused_elsewhere_allowed(default_server):
    channel, marker = fresh("staff:room"), fresh("marker-ws")
    alice, bob, anon = ws_as(default_server, "alice"), ws_as(default_server, "bob"), ws_as(default_server)
    try:
        epoch = alice.ok("pubsub", "subscribe", {"channel": channel})["epoch"]
        bob.ok("pubsub", "publish", {"channel": channel, "message": "for staff"})
        assert alice.next_message(channel) == "for staff"
        anon.ok("pubsub", "subscribe", {"channel": marker})
        since = {"offset": 0, "epoch": epoch}
        for params in ({"channel": channel}, {"channel": channel, "since": since}):
            answer = anon.call("pubsub", "subscribe", params)
            assert answer == {"type": "error", "callId": answer["callId"], "message": REFUSED}
        bob.ok("pubsub", "publish", {"channel": channel, "message": "second"})
        bob.ok("pubsub", "publish", {"channel": marker, "message": "marker"})
        anon.nothing_before(is_marker(marker))
        # an identity recovers what it missed; other channels are open to anyone
        answer = bob.call("pubsub", "subscribe", {"channel": channel, "since": since})
        assert answer["data"]["recovered"] is True and answer["data"]["offset"] == 2
        assert [m["message"]["message"] for m in bob.notifications] == ["for staff", "second"]
        for open_channel in (fresh("open"), fresh("misc:x"), fresh("public:news")):
            anon.ok("pubsub", "subscribe", {"channel": open_channel})
    finally:
        for c in (alice, bob, anon):
            c.close()


def test_websocket_publish_refused(default_server):
    public, locked, marker = fresh("public:news"), fresh("locked:prices"), fresh("marker-pub")
    alice, anon = ws_as(default_server, "alice"), ws_as(default_server)
    try:
        for c in (public, locked, marker):
            alice.ok("pubsub", "subscribe", {"channel": c})
        assert anon.call("pubsub", "publish", {"channel": public, "message": "forged"})["message"] == REFUSED
        assert alice.call("pubsub", "publish", {"channel": locked, "message": "forged"})["message"] == REFUSED
        anon.ok("pubsub", "publish", {"channel": marker, "message": "open to anyone"})
        assert alice.nothing_before(is_marker(marker))["message"] == "open to anyone"
        alice.ok("pubsub", "publish", {"channel": public, "message": "signed"})
        assert alice.next_message(public) == "signed"
        # the backend publishes whatever the namespace says
        r = default_server.post_backend("pubsub_backend", {
            "command": "publish", "params": {"channel": locked, "message": "official"}, "callId": 1})
        assert r.status_code == 200 and r.json()["message"]["type"] == "response", r.text
        assert alice.next_message(locked) == "official"
    finally:
        alice.close()
        anon.close()


def test_websocket_a_denied_subscriber_gets_nothing_of_racing_publishes(default_server):
    channel, marker = fresh("staff:race"), fresh("marker-race")
    alice, bob, anon = ws_as(default_server, "alice"), ws_as(default_server, "bob"), ws_as(default_server)
    stop, published = threading.Event(), []

    def flood():
        while not stop.is_set():
            bob.ok("pubsub", "publish", {"channel": channel, "message": len(published)})
            published.append(1)
    try:
        alice.ok("pubsub", "subscribe", {"channel": channel})
        anon.ok("pubsub", "subscribe", {"channel": marker})
        publisher = threading.Thread(target=flood, daemon=True)
        publisher.start()
        alice.next_message(channel)  # the flood is on
        for _ in range(30):
            assert anon.call("pubsub", "subscribe", {"channel": channel})["message"] == REFUSED
        stop.set()
        publisher.join(10)
        assert not publisher.is_alive() and len(published) >= 2
        alice.ok("pubsub", "publish", {"channel": marker, "message": "marker"})
        anon.nothing_before(is_marker(marker))
    finally:
        stop.set()
        for c in (alice, bob, anon):
            c.close()


def test_websocket_chat_join_and_send_refused(default_server):
    closed, locked, marker = fresh("closed:chat"), fresh("locked:chat"), fresh("marker-chat")
    alice, bob = ws_as(default_server, "alice"), ws_as(default_server, "bob")
    try:
        bob.ok("chat", "join", {"channel": marker})
        for extra in ({}, {"recent": 5}):
            assert alice.call("chat", "join", {"channel": closed, **extra})["message"] == REFUSED
        alice.ok("chat", "join", {"channel": locked})
        assert alice.call("chat", "send", {"channel": locked, "body": "x"})["message"] == REFUSED
        alice.ok("chat", "join", {"channel": marker})  # bob hears of alice: no message before
        got = bob.nothing_before(lambda m: m.get("type") == "presence")
        assert (got["channel"], got["from"]) == (marker, "alice")
        alice.ok("chat", "send", {"channel": marker, "body": "open"})
    finally:
        alice.close()
        bob.close()


def test_history_size_per_namespace(default_server):
    short, other = fresh("short:feed"), fresh("long-feed")
    alice, bob = ws_as(default_server, "alice"), ws_as(default_server, "bob")
    try:
        epochs = {c: alice.ok("pubsub", "subscribe", {"channel": c})["epoch"] for c in (short, other)}
        for c in (short, other):
            for i in range(5):
                alice.ok("pubsub", "publish", {"channel": c, "message": i})

        def recover(channel, offset):
            bob.notifications.clear()
            answer = bob.call("pubsub", "subscribe", {"channel": channel, "since": {
                "offset": offset, "epoch": epochs[channel]}})
            bob.ok("pubsub", "unsubscribe", {"channel": channel})
            return answer["data"]["recovered"], [m["message"]["message"] for m in bob.notifications]
        assert recover(short, 0) == (False, [])
        assert recover(short, 3) == (True, [3, 4])
        assert recover(other, 0) == (True, [0, 1, 2, 3, 4])
    finally:
        alice.close()
        bob.close()


def test_sockjs_xhr_subscribe_recovery_and_publish_refused(default_server):
    channel, marker = fresh("staff:xhr"), fresh("marker-xhr")
    alice = ws_as(default_server, "alice")
    try:
        epoch = alice.ok("pubsub", "subscribe", {"channel": channel})["epoch"]
        alice.ok("pubsub", "publish", {"channel": channel, "message": "for staff"})
        with requests.Session() as http:  # anonymous
            page = XhrSession(http, default_server)
            page.open()
            page.send(envelope("pubsub", "subscribe", {"channel": marker}, 1))
            assert page.until_answered()[-1]["message"]["type"] == "response"
            page.send(envelope("pubsub", "subscribe", {"channel": channel}, 2),
                      envelope("pubsub", "subscribe", {"channel": channel,
                                                       "since": {"offset": 0, "epoch": epoch}}, 3),
                      envelope("pubsub", "publish", {"channel": fresh("public:x"), "message": 1}, 4))
            assert [m["message"] for m in page.until_answered(3)] == [
                {"type": "error", "callId": n, "message": REFUSED} for n in (2, 3, 4)]
            alice.ok("pubsub", "publish", {"channel": channel, "message": "second"})
            alice.ok("pubsub", "publish", {"channel": marker, "message": "marker"})
            assert page.next_envelopes()[0]["message"]["channel"] == marker
    finally:
        alice.close()


def test_presence_per_namespace(default_server):
    """``room:`` keeps presence, the services (SNORKY_*_PRESENCE unset) and
    every other channel none."""
    room, lobby = fresh("room:"), fresh("lobby")
    alice, bob = ws_as(default_server, "alice"), ws_as(default_server, "bob")
    off = "Presence not enabled"

    def stats(service, channel):
        r = default_server.post_backend("control", {
            "command": "presenceStats", "params": {"service": service, "channel": channel}, "callId": 1})
        assert r.status_code == 200, r.text
        message = r.json()["message"]
        return message.get("data", message.get("message"))
    try:
        for service, enter in (("pubsub", "subscribe"), ("chat", "join")):
            answer = alice.ok(service, enter, {"channel": room, "presence": True, "meta": {"s": 1}})
            assert [(e["identity"], e["meta"]) for e in answer["presence"]] == [("alice", {"s": 1})]
            bob.ok(service, enter, {"channel": room, "meta": "b"})
            change = alice.wait_for(lambda m: m.get("type") == "presenceChange")
            assert (change["event"], change["identity"], change["meta"]) == ("join", "bob", "b")
            assert bob.ok(service, "presenceStats", {"channel": room}) == {"clients": 2, "users": 2}
            assert stats(service, room) == {"clients": 2, "users": 2}
            assert alice.call(service, enter, {"channel": lobby, "presence": True})["message"] == off
            alice.ok(service, enter, {"channel": lobby})
            assert alice.call(service, "presenceStats", {"channel": lobby})["message"] == off
            assert stats(service, lobby) == off
    finally:
        alice.close()
        bob.close()

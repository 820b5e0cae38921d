"""Idempotent publishing against a real server (issue #25 item 2): a publish
retried with the same idempotencyKey — by a page over WebSocket (the same
connection or a new one), by the backend over HTTP, by a Chat member — is
delivered once and answered as the first was; with history the retry answers
the first one's offset.  The retry's absence is proven by a later marker."""
import pytest
import requests

from snorky_sync.backend import HTTPTransport, SnorkyBackend
from support.servers import API_KEY, ServerProcess
from support.wsclient import SnorkyTestClient


@pytest.fixture(scope="module")
def server(testapp_server):
    return testapp_server


def received(ws, channel, marker="marker"):
    """The messages of ``channel`` before ``marker``, in order."""
    got = []
    while (msg := ws.next_message(channel, timeout=15)) != marker:
        got.append(msg)
    return got


def test_a_page_retrying_a_publish_delivers_it_once(server, connect):
    sub, pub = connect(), connect()
    sub.ok("pubsub", "subscribe", {"channel": "idem-page"})
    params = {"channel": "idem-page", "message": {"n": 1}, "idempotencyKey": "3f2a-retry-1"}
    first = pub.call("pubsub", "publish", params)
    again = pub.call("pubsub", "publish", params)
    again_elsewhere = connect().call("pubsub", "publish", params)   # a new connection (reconnected)
    assert first["type"] == again["type"] == again_elsewhere["type"] == "response"
    assert first["data"] == again["data"] == again_elsewhere["data"] is None
    pub.ok("pubsub", "publish", {"channel": "idem-page", "message": {"n": 2}, "idempotencyKey": "3f2a-retry-2"})
    pub.ok("pubsub", "publish", {"channel": "idem-page", "message": "marker"})
    assert received(sub, "idem-page") == [{"n": 1}, {"n": 2}]
    # the same key on another channel is another publish
    sub.ok("pubsub", "subscribe", {"channel": "idem-other"})
    pub.ok("pubsub", "publish", {"channel": "idem-other", "message": "x", "idempotencyKey": "3f2a-retry-1"})
    pub.ok("pubsub", "publish", {"channel": "idem-other", "message": "marker"})
    assert received(sub, "idem-other") == ["x"]


def test_the_backend_retrying_over_http_delivers_once(server, connect):
    sub = connect()
    sub.ok("pubsub", "subscribe", {"channel": "idem-backend"})
    backend = SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY))
    for _ in range(3):
        backend.publish("idem-backend", "once", idempotency_key="order-42-paid")
    raw = server.post_backend("pubsub_backend", {"command": "publish", "callId": 1, "params": {
        "channel": "idem-backend", "message": "once", "idempotencyKey": "order-42-paid"}})
    assert raw.json()["message"] == {"type": "response", "callId": 1, "data": None}
    backend.publish("idem-backend", "marker")
    assert received(sub, "idem-backend") == ["once"]


def test_keys_are_checked(server, connect):
    pub = connect()
    too_long = pub.call("pubsub", "publish", {"channel": "c", "message": 1, "idempotencyKey": "k" * 257})
    assert too_long == {"type": "error", "callId": too_long["callId"], "message": "Idempotency key too long"}
    assert pub.call("pubsub", "publish", {"channel": "c", "message": 1, "idempotencyKey": 7})["message"] == \
        "Invalid params"
    r = server.post_backend("pubsub_backend", {"command": "publish", "callId": 2, "params": {
        "channel": "c", "message": 1, "idempotencyKey": "k" * 257}})
    assert r.json()["message"]["message"] == "Idempotency key too long"


def test_a_chat_member_retrying_a_send_delivers_it_once(server):
    def member(user):
        token = requests.get(f"{server.url}/token/{user}", timeout=5).text
        c = SnorkyTestClient(f"{server.ws_url}/ws-token?token={token}")
        c.ok("chat", "join", {"channel": "idem-room"})
        return c
    alice, bob = member("alice"), member("bob")
    try:
        for _ in range(2):
            alice.ok("chat", "send", {"channel": "idem-room", "body": "hello", "idempotencyKey": "msg-1"})
        alice.ok("chat", "send", {"channel": "idem-room", "body": "marker"})
        bodies = []
        while (body := bob.wait_for(lambda m: m.get("type") == "message", 15)["body"]) != "marker":
            bodies.append(body)
        assert bodies == ["hello"]
    finally:
        alice.close()
        bob.close()


def test_with_history_the_retry_answers_the_first_offset():
    srv = ServerProcess("embedded", app="tests.integration.testapp:app",
                        env={"SNORKY_PUBSUB_HISTORY_SIZE": "10"})
    sub, pub = SnorkyTestClient(srv.ws_url + "/ws"), SnorkyTestClient(srv.ws_url + "/ws")
    try:
        sub.ok("pubsub", "subscribe", {"channel": "h"})
        pub.ok("pubsub", "subscribe", {"channel": "h"})
        params = {"channel": "h", "message": "once", "excludeSender": True, "idempotencyKey": "h-1"}
        first = pub.ok("pubsub", "publish", params)
        assert set(first) == {"offset", "epoch"}
        assert pub.ok("pubsub", "publish", params) == first                  # the same offset and epoch
        pub.ok("pubsub", "publish", {"channel": "h", "message": "marker"})
        got = []
        while (msg := sub.wait_for(lambda m: m.get("type") == "message", 15))["message"] != "marker":
            got.append((msg["message"], msg["offset"]))
        assert got == [("once", first["offset"])]
    finally:
        sub.close()
        pub.close()
        srv.stop()

"""Only the backend publishes into backend-only channels (issue #21 item 16).

Any anonymous client could publish into the channels the trusted backend
publishes to (the default app's ``news``), indistinguishable from the
backend's messages.  Here, under every serving mode: a client's publish
into ``news`` answers ``Not authorized`` on WebSocket, on SockJS (xhr) and
on SockJS's WebSocket, and its message reaches no subscriber (a backend
marker published after it arrives first: absence proven by a marker); the
backend's publish arrives; other channels stay open to clients (0.1).
SNORKY_BACKEND_ONLY_CHANNELS replaces the list in the default app, and
takes effect the same way in a user's own app (examples/pubsub_server.py).
"""
from __future__ import annotations

import json

import pytest
import requests
import websocket

from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient

from .sockjs_support import envelope, messages, sid_url


def backend_publish(srv, channel, message) -> None:
    reply = srv.post_backend("pubsub_backend", {"command": "publish", "callId": 1,
                                                "params": {"channel": channel, "message": message}})
    assert reply.status_code == 200 and reply.json()["message"]["type"] == "response", reply.text


def subscriber(srv, channel="news") -> SnorkyTestClient:
    sub = SnorkyTestClient(f"{srv.ws_url}/ws")
    sub.ok("pubsub", "subscribe", {"channel": channel})
    return sub


def test_websocket_publish_into_news_is_refused(default_server):
    sub, attacker = subscriber(default_server), SnorkyTestClient(f"{default_server.ws_url}/ws")
    try:
        answer = attacker.call("pubsub", "publish", {"channel": "news", "message": "forged"})
        assert answer == {"type": "error", "callId": answer["callId"], "message": "Not authorized"}
        backend_publish(default_server, "news", "from the backend")
        assert sub.next_message("news") == "from the backend"  # the forged one never came
    finally:
        sub.close()
        attacker.close()


def test_other_channels_stay_open_to_clients(default_server):
    sub, other = subscriber(default_server, "messaging"), SnorkyTestClient(f"{default_server.ws_url}/ws")
    try:
        other.ok("pubsub", "publish", {"channel": "messaging", "message": "hi"})
        assert sub.next_message("messaging") == "hi"
        # a channel that is not the string "news" is another channel
        other.ok("pubsub", "publish", {"channel": ["news"], "message": "list"})
    finally:
        sub.close()
        other.close()


def test_sockjs_xhr_publish_into_news_is_refused(default_server):
    sub = subscriber(default_server)
    base = sid_url(default_server)
    headers = {"Origin": default_server.url}
    try:
        with requests.Session() as http:
            assert http.post(base + "/xhr", headers=headers, timeout=10).text == "o\n"
            sent = http.post(base + "/xhr_send", headers=headers, timeout=10,
                             data=json.dumps([envelope("pubsub", "publish", {"channel": "news", "message": "forged"})]))
            assert sent.status_code == 204, sent.text
            answers = []
            while not answers:
                answers = messages(http.post(base + "/xhr", headers=headers, timeout=30).content)
            (answer,) = answers
            assert answer["message"] == {"type": "error", "callId": 1, "message": "Not authorized"}
        backend_publish(default_server, "news", "marker")
        assert sub.next_message("news") == "marker"
    finally:
        sub.close()


def test_sockjs_websocket_publish_into_news_is_refused(default_server):
    sub = subscriber(default_server)
    ws = websocket.create_connection(
        sid_url(default_server).replace("http://", "ws://", 1) + "/websocket", timeout=10)
    try:
        assert ws.recv() == "o"
        ws.send(json.dumps([envelope("pubsub", "publish", {"channel": "news", "message": "forged"})]))
        frame = ws.recv()
        while not frame.startswith("a"):  # heartbeats
            frame = ws.recv()
        (answer,) = [json.loads(m) for m in json.loads(frame[1:])]
        assert answer["message"] == {"type": "error", "callId": 1, "message": "Not authorized"}
        backend_publish(default_server, "news", "marker")
        assert sub.next_message("news") == "marker"
    finally:
        ws.close()
        sub.close()


def test_the_setting_replaces_the_list_in_the_default_app():
    srv = ServerProcess("embedded", app="wsgi:app",
                        env={"SNORKY_BACKEND_ONLY_CHANNELS": "prices.*, alerts"})
    try:
        c = SnorkyTestClient(f"{srv.ws_url}/ws")
        for channel in ("prices.eur", "prices.", "alerts"):
            assert c.call("pubsub", "publish", {"channel": channel, "message": 1})["message"] \
                == "Not authorized"
        for channel in ("news", "prices", "alerts.x"):
            c.ok("pubsub", "publish", {"channel": channel, "message": 1})
        sub = subscriber(srv, "prices.eur")
        backend_publish(srv, "prices.eur", 42)
        assert sub.next_message("prices.eur") == 42
        c.close()
        sub.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("mode", ["embedded", "gunicorn-gevent"])
def test_the_setting_takes_effect_in_a_users_own_app(mode):
    """examples/pubsub_server.py mounts its own PubSubService("messaging") with
    Snorky(app).websocket: the setting reaches it as it reaches the default app's."""
    srv = ServerProcess(mode, app="examples.pubsub_server:app",
                        env={"SNORKY_BACKEND_ONLY_CHANNELS": "news"})
    try:
        c = SnorkyTestClient(f"{srv.ws_url}/ws")
        assert c.call("messaging", "publish", {"channel": "news", "message": 1})["message"] \
            == "Not authorized"
        c.ok("messaging", "publish", {"channel": "other", "message": 1})
        c.close()
    finally:
        srv.stop()

"""PubSub ``subscribe({channel, recent: n})``, a latest-value namespace and
``publish({..., excludeSender: true})`` against the default app (issue #25
items 5-6), under every serving mode, over WebSocket and SockJS (websocket
and xhr polling).

``recent`` while a backend thread publishes without pause: every page sees
contiguous offsets from its first one, each once, the last ``n`` before the
answer.  ``excludeSender``: the publisher's connection gets its answer (the
message's offset) and not the message, its identity's other connection and
another page get it; the next message it gets follows that offset.
"""
from __future__ import annotations

import itertools
import json
import threading

import pytest

from snorky_sync.auth import ConnectionTokens
from support.servers import WORKER_CLASSES, serving
from support.sockjs_client import SockJSClient
from support.wsclient import SnorkyTestClient

SECRET = "recent-exclude-secret-0123456789abcdef"
TOKENS = ConnectionTokens(SECRET)
SERVER_ENV = {"SNORKY_TOKEN_SECRET": SECRET, "SNORKY_PUBSUB_HISTORY_SIZE": "50",
              "SNORKY_CHAT_HISTORY_SIZE": "50",
              "SNORKY_NAMESPACES": json.dumps({"price": {"recent": 1}})}
_ids = itertools.count()


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    yield from serving(request, request.param, "wsgi:app", SERVER_ENV)


def fresh(prefix: str = "c") -> str:
    return f"{prefix}{next(_ids)}"


def backend_publish(srv, channel, message):
    r = srv.post_backend("pubsub_backend", {"command": "publish", "callId": 1,
                                            "params": {"channel": channel, "message": message}})
    assert r.status_code == 200 and r.json()["message"]["type"] == "response", r.text


class Page:
    """A page over WebSocket (``ws``) or a SockJS transport, as ``identity``."""

    def __init__(self, srv, transport: str, identity=None):
        query = "" if identity is None else f"token={TOKENS.create(identity)}"
        if transport == "ws":
            self.conn = SnorkyTestClient(f"{srv.ws_url}/ws" + (f"?{query}" if query else ""))
        else:
            self.conn = SockJSClient(srv, "/sockjs", transport, query=query)

    def call(self, command, params):
        """The answer, and the notifications that came before it."""
        self.conn.notifications.clear()
        answer = self.conn.call("pubsub", command, params)
        before = [env["message"] for env in self.conn.notifications]
        self.conn.notifications.clear()
        return answer, before

    def next_message(self, channel):
        return self.conn.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel)

    def close(self):
        self.conn.close()


TRANSPORTS = ["ws", "websocket", "xhr"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recent_under_concurrent_publishes_is_contiguous_and_once(server, transport):
    channel = fresh()
    for i in range(5):
        backend_publish(server, channel, i)
    stop = threading.Event()
    published = []

    def publisher():
        i = 5
        while not stop.is_set():
            backend_publish(server, channel, i)
            published.append(i)
            i += 1
    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    pages = []
    try:
        for _ in range(4):
            page = Page(server, transport)
            pages.append(page)
            answer, before = page.call("subscribe", {"channel": channel, "recent": 3})
            assert answer["type"] == "response", answer
            offsets = [m["offset"] for m in before if m.get("type") == "message"]
            assert len(offsets) >= 3 and offsets == list(range(offsets[0], offsets[-1] + 1)), offsets
            # the last 3 at the read, then those that came during it: the answer is the last
            assert answer["data"]["offset"] == offsets[-1]
            page.first, page.seen = offsets[0], offsets
        while len(published) < 20:  # let each page get live ones too
            pages[-1].seen.append(pages[-1].next_message(channel)["offset"])
        stop.set()
        thread.join(30)
        last = 5 + len(published)
        for page in pages:
            while page.seen[-1] < last:
                page.seen.append(page.next_message(channel)["offset"])
            assert page.seen == list(range(page.first, last + 1))   # no gap, no duplicate
    finally:
        stop.set()
        for page in pages:
            page.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_latest_value_namespace_and_recent_limits(server, transport):
    channel = fresh("price:eur")
    for price in (1.10, 1.11, 1.12):
        backend_publish(server, channel, price)
    page = Page(server, transport)
    try:
        answer, before = page.call("subscribe", {"channel": channel})
        assert [(m["message"], m["offset"]) for m in before] == [(1.12, 3)]
        assert answer["data"]["offset"] == 3
        answer, _ = page.call("subscribe", {"channel": fresh(), "recent": 101})
        assert answer["message"] == "Recent too large"
        answer, _ = page.call("subscribe", {"channel": fresh(), "recent": "3"})
        assert answer["message"] == "Invalid params"
    finally:
        page.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exclude_sender_skips_only_the_publishing_connection(server, transport):
    channel = fresh()
    sender, twin, other = (Page(server, transport, "ann"), Page(server, transport, "ann"),
                           Page(server, transport, "bob"))
    try:
        for page in (sender, twin, other):
            assert page.call("subscribe", {"channel": channel})[0]["type"] == "response"
        backend_publish(server, channel, "first")
        assert sender.next_message(channel)["offset"] == 1
        answer, before = sender.call("publish", {"channel": channel, "message": "mine",
                                                 "excludeSender": True})
        assert before == [] and answer["data"]["offset"] == 2, (answer, before)
        for page in (twin, other):
            page.next_message(channel)
            mine = page.next_message(channel)
            assert (mine["message"], mine["offset"]) == ("mine", 2)
        backend_publish(server, channel, "after")
        after = sender.next_message(channel)          # the next it gets: nothing between
        assert (after["message"], after["offset"]) == ("after", 3)
        answer, before = sender.call("publish", {"channel": channel, "message": "echo"})
        assert [m.get("message") for m in before] == ["echo"] and answer["data"] is None  # 0.1's
    finally:
        for page in (sender, twin, other):
            page.close()

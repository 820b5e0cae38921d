"""The JavaScript snippets of docs/javascript.md run, unchanged, in headless
Chromium against a real server (tests/docs/js_snippets_server.py: what the page
assumes — snorky.js at /static/snorky.js, /ws with an identity, /api/todos).
The page's own functions the snippets call (show, note, render, ...) are
recorded; a second connection ("bob") is the other side of each service."""
import json
from pathlib import Path

import pytest
import requests
from browser.conftest import CHROMIUM, FLAGS

from support.servers import API_KEY, ServerProcess
from support.wsclient import SnorkyTestClient

from .test_snippets import SNIPPETS

HERE = Path(__file__).resolve().parent
T = 20000
PAGE_FUNCTIONS = ["show", "alert", "renderMembers", "note", "drawCursor", "eraseCursor", "render"]


def page_snippets():
    found = [s for s in SNIPPETS if s.page == "docs/javascript.md" and s.lang in ("html", "js")]
    assert [s.lang for s in found[:2]] == ["html", "js"], [str(s) for s in found]
    return found[0].code, found[1].code


def page_html(connect_html: str, usage_js: str) -> str:
    stubs = "".join(f"function {name}() {{ window.calls.push(['{name}'].concat([].slice.call(arguments))); }}\n"
                    for name in PAGE_FUNCTIONS)
    return ("<!doctype html><html><body><script>window.calls = [];\n" + stubs +
            "function onPointerMove(fn) { window.movePointer = fn; }\n</script>\n" +
            connect_html + "\n<script>\n" + usage_js + "\n</script></body></html>")


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(args=[str(HERE / "js_snippets_server.py")])
    yield srv
    srv.stop()


def test_the_javascript_page_s_snippets_run_against_a_real_server(server, playwright_instance):
    connect_html, usage_js = page_snippets()
    bob = SnorkyTestClient(server.ws_url + "/ws?as=bob")
    bob.ok("messaging", "registerParticipant", {"name": "bob"})
    bob.ok("cursors", "join", {"document": "doc1"})
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server.url + "/static/snorky.js")       # the server's origin, then the page
        page.set_content(page_html(connect_html, usage_js))

        def called(name, *args):
            page.wait_for_function("([n, a]) => window.calls.some(c => c[0] === n && "
                                   "JSON.stringify(c.slice(1, 1 + a.length)) === JSON.stringify(a))",
                                   arg=[name, list(args)], timeout=T)

        called("show", "news", "hello")                        # PubSub: its own publish came back
        called("renderMembers", ["alice"])                     # Chat: joined
        called("note", "alice: hi")                            # Chat: the message
        seen = []

        def bob_gets(pred):
            """The first of bob's notifications matching ``pred`` (none dropped)."""
            for m in seen:
                if pred(m):
                    return m
            while True:
                m = bob.next_notification(T / 1000)["message"]
                seen.append(m)
                if pred(m):
                    return m

        ping = bob_gets(lambda m: m.get("type") == "message" and "sender" in m)
        assert (ping["sender"], ping["dest"], ping["body"]) == ("alice", "bob", "ping")   # Messaging
        added = bob_gets(lambda m: m.get("type") == "cursorAdded")
        assert added["cursor"]["owner"] == "alice" and added["cursor"]["position"] == {"x": 0, "y": 0}
        page.wait_for_function("typeof window.movePointer === 'function'", timeout=T)
        page.evaluate("window.movePointer({x: 5, y: 7})")      # Cursors: the pointer moves
        moved = bob_gets(lambda m: m.get("type") == "cursorUpdated")
        assert moved["cursor"]["position"] == {"x": 5, "y": 7}

        page.wait_for_function("todos.length === 1", timeout=T)  # DataSync: loaded and subscribed
        page.wait_for_function("snorky.services.datasync.acquired.size === 1", timeout=T)
        reply = requests.post(server.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10, json={
            "service": "datasync_backend", "message": {"command": "publishDeltas", "params": {"deltas": [
                {"type": "insert", "model": "Todo", "data": {"id": 2, "title": "from the server"}}]}}})
        assert reply.json()["message"]["type"] == "response"
        called("render")
        assert page.evaluate("todos.map(t => t.title)") == ["existing", "from the server"]
        assert page.evaluate("snorky.isConnected") is True
        assert errors == []
    finally:
        browser.close()
        bob.close()


def test_the_notification_snippet_receives_the_service_s_pushes(server, playwright_instance):
    """docs/javascript.md's notificationReceived example, unchanged: the page
    shows the totals it watched, its own vote and another client's (pushes),
    and watches again after its connection is dropped."""
    [snippet] = [s for s in SNIPPETS if s.page == "docs/javascript.md" and s.options.get("page") == "poll"]
    assert "notificationReceived.add" in snippet.code
    bob = SnorkyTestClient(server.ws_url + "/ws?as=bob")
    assert bob.ok("poll", "vote", {"poll": "lunch", "option": "salad"}) == 1   # before the page watches
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    try:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server.url + "/static/snorky.js")
        page.set_content(
            '<!doctype html><html><body><script src="/static/snorky.js"></script>\n<script>window.shown = [];\n'
            "function showVotes(v) { window.shown.push(JSON.stringify(v)); }\n"
            "function onVoteClicked(fn) { window.clickVote = fn; }\n</script>\n"
            "<script>\n" + snippet.code + "\n</script></body></html>")

        def shown(votes):
            page.wait_for_function("v => window.shown.length > 0 && JSON.stringify(Object.entries("
                                   "JSON.parse(window.shown[window.shown.length - 1])).sort()) === v",
                                   arg=json.dumps(sorted([k, n] for k, n in votes.items()),
                                                  separators=(",", ":")), timeout=T)

        shown({"salad": 1})                                   # watch's answer
        page.evaluate("window.clickVote('pizza')")            # its own vote, pushed back to it
        shown({"salad": 1, "pizza": 1})
        assert bob.ok("poll", "vote", {"poll": "lunch", "option": "pizza"}) == 2   # another client's vote
        shown({"salad": 1, "pizza": 2})
        # the connection drops: the page reconnects, watches again, and gets the next pushes
        page.evaluate("live._socket.close()")
        page.wait_for_function("live.connectionCount === 2 && live.isConnected", timeout=T)
        page.wait_for_function("window.shown.length >= 4", timeout=T)  # the second watch's answer
        assert bob.ok("poll", "vote", {"poll": "lunch", "option": "sushi"}) == 1
        shown({"salad": 1, "pizza": 2, "sushi": 1})
        assert errors == []
    finally:
        browser.close()
        bob.close()

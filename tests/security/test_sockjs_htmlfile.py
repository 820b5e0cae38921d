"""The htmlfile transport cannot be broken by a message (issue #21, item 12).

htmlfile streams ``<script>p("...")</script>`` chunks into a hidden
document; a message holding ``<!--<script>`` once put the HTML parser into
its "script data escaped" state, and it swallowed every later chunk.  The
chunks must carry no ``<`` (nor ``>`` or ``&``) from message data: checked on
the bytes under every serving mode, and in headless Chromium with
sockjs-client on the htmlfile transport (the messages after such a message
still arrive).
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from .sockjs_support import Stream, envelope, request

NASTY = '<!--<script> & </script> <\u2028 x'  # no "-->": nothing would end the escape


def test_message_data_brings_no_markup_into_the_chunks(cookie_server):
    base = f"{cookie_server.url}/sockjs-anon/000/{uuid.uuid4().hex[:12]}"
    s = Stream("GET", base + "/htmlfile?c=cb")
    head = s.read()
    assert head.startswith(b"<!doctype html>")
    assert s.read() == b'<script>\np("o");\n</script>\r\n'
    channel = "html-" + uuid.uuid4().hex
    r = request("POST", base + "/xhr_send", body=json.dumps(
        [envelope("pubsub", "subscribe", {"channel": channel}, 1),
         envelope("pubsub", "publish", {"channel": channel, "message": NASTY}, 2)]).encode())
    assert r.status == 204
    body = b""
    published: list = []
    for _ in range(10):  # the answers to the calls, then the message
        chunk = s.read()
        assert chunk, body
        body += chunk
        published = decoded(body)
        if NASTY in published:
            break
    s.close()
    assert NASTY in published, body[-500:]
    for arg in CHUNK.findall(body):
        assert b"<" not in arg and b">" not in arg and b"&" not in arg, arg


CHUNK = re.compile(rb"<script>\np\((.*?)\);\n</script>\r\n", re.S)


def decoded(body: bytes) -> list:
    """The published messages in htmlfile chunks (each a JSON string literal)."""
    out = []
    for arg in CHUNK.findall(body):
        frame = json.loads(arg)
        if frame.startswith("a["):
            out += [json.loads(m)["message"].get("message") for m in json.loads(frame[1:])]
    return out


CLIENT = Path(__file__).resolve().parents[1] / "sockjs" / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"

PAGE = """<!doctype html><html><body><script src="/__sockjs.js"></script><script>
window.run = (url, channel, nasty) => new Promise((resolve) => {
  const sock = new SockJS(url, null, {transports: ["htmlfile"], timeout: 8000});
  const got = [];
  const call = (command, params, callId) =>
    sock.send(JSON.stringify({service: "pubsub", message: {command, params, callId}}));
  sock.onopen = () => call("subscribe", {channel}, 1);
  sock.onmessage = (e) => {
    const m = JSON.parse(e.data).message;
    got.push(m);
    if (m.callId === 1) call("publish", {channel, message: nasty}, 2);
    if (m.type === "message" && m.message === nasty) call("publish", {channel, message: "after"}, 3);
    if (m.type === "message" && m.message === "after") { resolve(got); sock.close(); }
  };
  setTimeout(() => resolve(got), 15000);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def browser_server():
    from support.servers import ServerProcess, free_port
    port = free_port()
    srv = ServerProcess("embedded", app="tests.security.cookie_app:app", port=port,
                        env={"SNORKY_SOCKJS_URL": f"http://127.0.0.1:{port}/__sockjs.js"})
    yield srv
    srv.stop()


@pytest.mark.skipif(not CLIENT.exists(), reason="sockjs-client not installed (scripts/test.sh installs it)")
def test_chromium_htmlfile_keeps_receiving_after_a_nasty_message(browser_server, playwright_instance):
    from browser.conftest import CHROMIUM, FLAGS
    client = CLIENT.read_bytes()
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=[*FLAGS, "--disable-features=LocalNetworkAccessChecks"])
    try:
        ctx = b.new_context()
        ctx.route(browser_server.url + "/__page.html", lambda route: route.fulfill(
            body=PAGE, content_type="text/html; charset=utf-8"))
        ctx.route(browser_server.url + "/__sockjs.js", lambda route: route.fulfill(
            body=client, content_type="application/javascript"))
        page = ctx.new_page()
        page.goto(browser_server.url + "/__page.html")
        got = page.evaluate("([u, c, n]) => run(u, c, n)",
                            [browser_server.url + "/sockjs-anon", "html-" + uuid.uuid4().hex, NASTY])
        published = [m["message"] for m in got if m.get("type") == "message"]
        assert published == [NASTY, "after"], got
        ctx.close()
    finally:
        b.close()

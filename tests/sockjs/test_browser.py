"""sockjs-client 1.x (from npm, tests/sockjs/node_modules) in headless Chromium,
forced onto each transport in turn, against a real snorky_sync server's
SockJS endpoint: PubSub round trips, a server-side publish fanned out, a
message with characters browsers mangle, and ``?token=`` identities."""
from pathlib import Path

import pytest

from browser.conftest import CHROMIUM, FLAGS
from support.servers import ServerProcess

CLIENT = Path(__file__).resolve().parent / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
if not CLIENT.exists():
    pytest.skip("sockjs-client is not installed (scripts/test.sh runs npm install in tests/sockjs)",
                allow_module_level=True)

PAGE = """<!doctype html><html><body><script src="/__sockjs.js"></script><script>
window.run = (url, transport, channel) => new Promise((resolve, reject) => {
  const sock = new SockJS(url, null, {transports: [transport], timeout: 8000});
  const got = [];
  const text = "hello \u2028\u00e9\u4e2d " + "x".repeat(5000);
  const call = (service, command, params, callId) =>
    sock.send(JSON.stringify({service, message: {command, params, callId}}));
  sock.onopen = () => call("pubsub", "subscribe", {channel}, 1);
  sock.onmessage = (e) => {
    const m = JSON.parse(e.data).message;
    got.push(m);
    if (m.callId === 1) call("pubsub", "publish", {channel, message: text}, 2);
    if (m.callId === 2) call("who", "whoami", {}, 3);
    if (m.callId === 3) { resolve({transport: sock.transport, got, text}); sock.close(); }
  };
  sock.onclose = (e) => reject(new Error("closed " + e.code + " " + e.reason));
});
</script></body></html>"""

SAME_ORIGIN = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "htmlfile",
               "jsonp-polling", "iframe-eventsource", "iframe-htmlfile", "iframe-xhr-polling"]
CROSS_ORIGIN = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "jsonp-polling",
                "iframe-htmlfile"]


@pytest.fixture(scope="module")
def server():
    from support.servers import free_port
    port = free_port()
    srv = ServerProcess("embedded", app="tests.integration.testapp:app", port=port,
                        env={"SNORKY_SOCKJS_URL": f"http://127.0.0.1:{port}/__sockjs.js"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def context(server, playwright_instance):
    client = CLIENT.read_bytes()
    # the test pages are fulfilled by Playwright, not loaded from a local address:
    # Chromium's local-network checks would then block their WebSockets to 127.0.0.1
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=[*FLAGS, "--disable-features=LocalNetworkAccessChecks"])
    ctx = b.new_context()
    # the test page and sockjs-client, served on the server's origin and on another one
    for origin in (server.url, "http://other.test"):
        ctx.route(origin + "/__page.html", lambda route: route.fulfill(
            body=PAGE, content_type="text/html; charset=utf-8"))
        ctx.route(origin + "/__sockjs.js", lambda route: route.fulfill(
            body=client, content_type="application/javascript"))
    yield ctx
    ctx.close()
    b.close()


@pytest.fixture(scope="module")
def page(context, server):
    pg = context.new_page()
    pg.goto(server.url + "/__page.html")
    return pg


@pytest.fixture(scope="module")
def foreign_page(context):
    pg = context.new_page()
    pg.goto("http://other.test/__page.html")
    return pg


def check(result, transport, identity=None):
    assert result["transport"] == transport
    got = result["got"]
    assert got[0] == {"type": "response", "callId": 1, "data": None}
    assert {"type": "message", "channel": got[1]["channel"], "message": result["text"]} == got[1]
    assert got[2] == {"type": "response", "callId": 2, "data": None}
    assert got[3] == {"type": "response", "callId": 3, "data": identity}


@pytest.mark.parametrize("transport", SAME_ORIGIN)
def test_every_transport_same_origin(page, server, transport):
    result = page.evaluate("([u, t, c]) => run(u, t, c)",
                           [server.url + "/sockjs", transport, "same-" + transport])
    check(result, transport)


@pytest.mark.parametrize("transport", CROSS_ORIGIN)
def test_transports_from_another_origin(foreign_page, server, transport):
    result = foreign_page.evaluate("([u, t, c]) => run(u, t, c)",
                                   [server.url + "/sockjs", transport, "cross-" + transport])
    check(result, transport)


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling", "jsonp-polling"])
def test_token_on_the_sockjs_url(page, server, transport):
    import requests
    token = requests.get(server.url + "/token/ann", timeout=5).text
    result = page.evaluate("([u, t, c]) => run(u, t, c)",
                           [f"{server.url}/sockjs-token?token={token}", transport, "tok-" + transport])
    check(result, transport, identity={"user": "ann"})

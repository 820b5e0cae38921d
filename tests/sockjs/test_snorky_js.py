"""snorky.js over SockJS in headless Chromium (sockjs-client 1.x from npm): 0.1's
``new Snorky(SockJS, url, services)`` on each transport, the automatic fallback
when a WebSocket cannot be opened, and reconnection with restore across a
server restart while on SockJS."""
from pathlib import Path

import pytest
import requests

from browser.conftest import CHROMIUM, FLAGS
from support.servers import API_KEY, ServerProcess, free_port

CLIENT = Path(__file__).resolve().parent / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
if not CLIENT.exists():
    pytest.skip("sockjs-client is not installed (scripts/test.sh runs npm install in tests/sockjs)",
                allow_module_level=True)

T = 20000  # ms: generous, the machine is shared

PAGE = """<!doctype html><html><body>
<script src="/__sockjs.js"></script>
<script src="/snorky_sync/static/snorky.js"></script>
<script>
// 0.1's way: the socket class is SockJS (here forced onto one transport)
window.run01 = (url, transport) => new Promise((resolve, reject) => {
  function ForcedSockJS(u) { return new SockJS(u, null, {transports: [transport]}); }
  var snorky = new Snorky(transport ? ForcedSockJS : SockJS, url, {pubsub: Snorky.PubSub});
  var pubsub = snorky.services.pubsub;
  pubsub.messagePublished.add(function (msg) {
    resolve({message: msg.message, transport: snorky.transport});
    snorky.close();
  });
  pubsub.subscribe({channel: "c01-" + transport}).then(function () {
    return pubsub.publish({channel: "c01-" + transport, message: "over " + transport});
  }).then(null, function (err) { reject(err.message); });
});

// a WebSocket that cannot be opened: snorky.js falls back to SockJS by itself
window.fallback = (wsUrl, transport) => new Promise((resolve, reject) => {
  var snorky = new Snorky(WebSocket, wsUrl, {pubsub: Snorky.PubSub},
                          {sockjsOptions: {transports: [transport]}});
  var pubsub = snorky.services.pubsub;
  pubsub.messagePublished.add(function (msg) {
    resolve({message: msg.message, transport: snorky.transport, onFallback: snorky.onFallback});
    snorky.close();
  });
  pubsub.subscribe({channel: "fb"}).then(function () {
    return pubsub.publish({channel: "fb", message: "fell back"});
  }).then(null, function (err) { reject(err.message); });
});

// stays connected: window.live tells what happened.  SockJS as the socket
// class (0.1's way), or (viaFallback) a WebSocket URL that cannot be opened,
// so that snorky.js falls back to SockJS by itself
window.startLive = (url, transport, viaFallback) => {
  window.live = {opens: 0, messages: [], transports: []};
  function ForcedSockJS(u) { return new SockJS(u, null, {transports: [transport]}); }
  var timing = {reconnectDelay: 200, maxReconnectDelay: 1000};
  var snorky = window.liveSnorky = viaFallback
    ? new Snorky(WebSocket, url, {pubsub: Snorky.PubSub},
                 Object.assign({sockjsOptions: {transports: [transport]}}, timing))
    : new Snorky(ForcedSockJS, url, {pubsub: Snorky.PubSub}, timing);
  snorky.connected.add(function (isReconnection) {
    window.live.opens += 1;
    window.live.transports.push(snorky.transport);
    // sent after the restored subscription on the same connection: when it
    // comes back, the new server has the subscription
    if (isReconnection) { snorky.services.pubsub.publish({channel: "live", message: "hello again"}); }
  });
  snorky.services.pubsub.messagePublished.add(function (m) { window.live.messages.push(m.message); });
  snorky.services.pubsub.subscribe({channel: "live"}).then(function () { window.live.subscribed = true; });
};
</script></body></html>"""


@pytest.fixture(scope="module")
def port():
    return free_port()


@pytest.fixture(scope="module")
def server(port):
    holder = {"srv": ServerProcess("embedded", app="tests.integration.testapp:app", port=port)}
    yield holder
    holder["srv"].stop()


@pytest.fixture(scope="module")
def context(server, playwright_instance):
    url = server["srv"].url
    client = CLIENT.read_bytes()
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=[*FLAGS, "--disable-features=LocalNetworkAccessChecks"])
    ctx = b.new_context()
    ctx.route(url + "/__page.html", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
    ctx.route(url + "/__sockjs.js", lambda route: route.fulfill(body=client,
                                                                 content_type="application/javascript"))
    yield ctx
    ctx.close()
    b.close()


@pytest.fixture
def page(context, server):
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.goto(server["srv"].url + "/__page.html")
    yield pg
    pg.close()
    assert errors == []


@pytest.mark.parametrize("transport", ["", "websocket", "xhr-streaming", "xhr-polling", "eventsource",
                                       "jsonp-polling"])
def test_snorky_01_style_over_sockjs(page, server, transport):
    got = page.evaluate("([u, t]) => run01(u, t)", [server["srv"].url + "/sockjs", transport])
    assert got["message"] == "over " + transport
    assert got["transport"].startswith("sockjs:")
    if transport:
        assert got["transport"] == "sockjs:" + transport


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling"])
def test_falls_back_to_sockjs_when_the_websocket_cannot_open(page, server, transport):
    # /no-websocket-here answers 404 to the upgrade, as a proxy that blocks WebSocket would
    # refuse it; the fallback address is the same host's /sockjs
    ws_url = server["srv"].ws_url + "/no-websocket-here"
    got = page.evaluate("([u, t]) => fallback(u, t)", [ws_url, transport])
    assert got == {"message": "fell back", "transport": "sockjs:" + transport, "onFallback": True}


@pytest.mark.parametrize("via_fallback", [False, True], ids=["sockjs-class", "after-fallback"])
def test_reconnects_and_restores_over_sockjs_after_a_restart(page, server, port, via_fallback):
    # after-fallback: the page asked for a WebSocket that cannot open and fell back to
    # SockJS; its reconnection must use SockJS again (it once crashed: no class to use)
    url = server["srv"].ws_url + "/no-websocket-here" if via_fallback else server["srv"].url + "/sockjs"
    page.evaluate("([u, t, f]) => startLive(u, t, f)", [url, "xhr-polling", via_fallback])
    page.wait_for_function("window.live.opens === 1 && window.live.subscribed === true", timeout=T)

    def publish(text):
        answer = requests.post(server["srv"].url + "/backend", headers={"X-Backend-Key": API_KEY}, json={
            "service": "pubsub_backend", "message": {
                "command": "publish", "params": {"channel": "live", "message": text}}}, timeout=10).json()
        assert answer["message"]["type"] == "response", answer

    # the subscribe was answered: a publish now reaches the page
    publish("before")
    page.wait_for_function("window.live.messages.includes('before')", timeout=T)
    server["srv"].stop()
    server["srv"] = ServerProcess("embedded", app="tests.integration.testapp:app", port=port)
    page.wait_for_function("window.live.messages.includes('hello again')", timeout=T)
    # restored: the new process has the page's subscription again
    publish("after")
    page.wait_for_function("window.live.messages.includes('after')", timeout=T)
    assert page.evaluate("window.live.transports") == ["sockjs:xhr-polling", "sockjs:xhr-polling"]
    page.evaluate("window.liveSnorky.close()")

"""snorky.js in real headless Chromium against the server's power to end a
connection (issue #24 items 2-3), over WebSocket and SockJS (sockjs-client,
tests/sockjs/node_modules), embedded and under gunicorn -k gevent:

* a page closed by the backend's ``control.disconnect(reconnect=false)``
  (close code 4003) stays disconnected, while a page disconnected with
  reconnection allowed (4002) comes back;
* a page whose connection token expires (4001 unless refreshed) refreshes it
  in band through its ``getToken`` callback and keeps its subscription: a
  publish made after the original expiry reaches it, on the same connection.

The node runner tests the same client logic (tests/js/control.test.mjs,
token_refresh.test.mjs); these run it in a browser, on every transport.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from support.servers import serving

CLIENT = Path(__file__).resolve().parents[1] / "sockjs" / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
if not CLIENT.exists():
    pytest.skip("sockjs-client is not installed (scripts/test.sh runs npm install in tests/sockjs)",
                allow_module_level=True)

T = 20000  # ms: generous, the machine is shared
MODES = ["embedded", "gunicorn-gevent"]
TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling"]
CONTROL_SECRET = "browser-control-secret-0123456789abcdef"

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<script src="/snorky_sync/static/snorky.js"></script>
<script src="/test-only/sockjs.min.js"></script>
</head><body><script>
window.events = [];
// open(name, token, options): a Snorky instance window[name] on this page's transport
window.open_ = function (name, token, options) {
  var transport = window.TRANSPORT, base = location.host;
  var opts = Object.assign({reconnectDelay: 100, maxReconnectDelay: 500}, options || {});
  var cls = WebSocket, address = "ws://" + base + "/ws?token=" + token;
  if (transport !== "websocket") {
    cls = SockJS;
    address = "http://" + base + "/sockjs?token=" + token;
    opts.sockjsOptions = {transports: [transport]};
  }
  var s = window[name] = new Snorky(cls, address, {pubsub: Snorky.PubSub}, opts);
  s.disconnected.add(function (info) {
    events.push([name, "disconnected", info.code, info.reason, info.willReconnect]);
  });
  s.connected.add(function () { events.push([name, "connected"]); });
  s.services.pubsub.messagePublished.add(function (m) {
    events.push([name, "message", m.channel, m.message, m.offset, m.epoch]);
  });
  return new Promise(function (resolve) { s.connected.addOnce(function () { resolve(true); }); });
};
</script></body></html>"""


def event_count(page, *prefix) -> str:
    """A JS expression: how many events start with ``prefix``."""
    return (f"window.events.filter(e => {json.dumps(list(prefix))}"
            ".every((v, i) => e[i] === v)).length")


def open_page(pages, srv, transport: str):
    (page,) = pages(1)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.route("**/test-only/sockjs.min.js", lambda route: route.fulfill(
        body=CLIENT.read_text(), content_type="application/javascript"))
    page.goto(srv.url + "/healthz")  # the server's origin (same-origin fetches and sockets)
    page.set_content(PAGE)
    page.evaluate("t => { window.TRANSPORT = t; }", transport)
    page.errors = errors
    return page


@pytest.fixture(scope="module", params=MODES)
def control_server(request):
    """The default app with its backend control service and /token/<user> (tests/js/control_app.py)."""
    yield from serving(request, request.param, "tests.js.control_app:app",
                       {"SNORKY_TOKEN_SECRET": CONTROL_SECRET}, what="control_app")


@pytest.fixture(scope="module", params=MODES)
def refresh_server(request):
    """Expiring HS256 JWTs on /ws and /sockjs, /jwt/<user>?ttl=s (tests/js/token_refresh_app.py)."""
    yield from serving(request, request.param, "tests.js.token_refresh_app:app", what="token_refresh_app")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_page_closed_with_4003_stays_disconnected(control_server, pages, transport):
    srv = control_server
    page = open_page(pages, srv, transport)
    token = lambda user: requests.get(f"{srv.url}/token/{user}", timeout=10).text  # noqa: E731
    assert page.evaluate("t => open_('banned', t)", token("u42")) is True
    assert page.evaluate("t => open_('other', t)", token("u7")) is True
    assert page.evaluate("() => banned.services.pubsub.subscribe({channel: 'c'})") is None

    assert srv.backend_call("control", "disconnect", identity="u42", reconnect=False,
                            reason="banned") == {"closed": 1}
    page.wait_for_function(f"{event_count(page, 'banned', 'disconnected')} > 0", timeout=T)
    # u7 disconnected with reconnection allowed (4002): it comes back (after the same
    # reconnect delay the banned page would have waited), meanwhile u42's page stays down
    assert srv.backend_call("control", "disconnect", identity="u7") == {"closed": 1}
    page.wait_for_function(f"{event_count(page, 'other', 'connected')} === 2", timeout=T)
    events = page.evaluate("window.events")
    assert [e for e in events if e[0] == "banned"] == [
        ["banned", "connected"], ["banned", "disconnected", 4003, "banned", False]]
    assert ["other", "disconnected", 4002, "Disconnected", True] in events
    assert page.evaluate("[banned.isConnected, banned.isConnecting, banned.isReconnecting,"
                         " banned.connectionCount]") == [False, False, False, 1]
    assert page.errors == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_get_token_keeps_a_page_subscribed_past_its_token_expiry(refresh_server, pages, transport):
    srv = refresh_server
    page = open_page(pages, srv, transport)
    jwt = lambda user, ttl: requests.get(f"{srv.url}/jwt/{user}?ttl={ttl}", timeout=10).text  # noqa: E731
    first = jwt("ann", 2)
    page.evaluate("() => { window.getTokenCalls = 0; }")
    assert page.evaluate("""t => open_('ann', t, {tokenRefreshMargin: 1, getToken: function () {
        window.getTokenCalls += 1;
        return fetch('/jwt/ann?ttl=120').then(function (r) { return r.text(); });
    }})""", first) is True
    # the witness's token expires a second after ann's first one; it has no getToken
    assert page.evaluate("t => open_('witness', t, {reconnect: false})", jwt("wit", 3)) is True
    assert page.evaluate("t => open_('publisher', t)", jwt("pub", 120)) is True
    subscribed = page.evaluate("() => ann.services.pubsub.subscribe({channel: 'news'})")

    page.wait_for_function(f"{event_count(page, 'witness', 'disconnected', 4001)} === 1", timeout=T)
    # past ann's first token's expiry: ann is still on its first connection, subscribed
    page.evaluate("() => publisher.services.pubsub.publish({channel: 'news', message: 'after'})")
    page.wait_for_function(f"{event_count(page, 'ann', 'message', 'news', 'after')} === 1", timeout=T)
    (message,) = [e for e in page.evaluate("window.events") if e[:2] == ["ann", "message"]]
    assert message[4:] == [subscribed["offset"] + 1, subscribed["epoch"]]  # offsets continue
    assert page.evaluate("[ann.isConnected, ann.connectionCount, getTokenCalls >= 1]") == [True, 1, True]
    assert [e for e in page.evaluate("window.events") if e[:2] == ["ann", "disconnected"]] == []
    assert page.errors == []

"""The operator page (issue #24 item 5) in Chromium: the default app under two
gunicorn workers sharing a real redis-server, its page at /backend/operator.

It lists the connections of test WebSocket clients on both workers with their
channels and presence counts; its Disconnect button closes an identity's
connections on both workers (4003 and the reason with "no reconnect"); a wrong
key shows the error and no data; identities and channels are client data and
show as text; the key never goes in a URL; the page's headers forbid inline
script and framing.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from cluster.conftest import RedisServer, wait_broker

from snorky_sync.auth import ConnectionTokens
from support.servers import API_KEY, ServerProcess
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient, close_of

T = 30000
SECRET = "operator-page-token-secret-0123456789"
XSS = '<img src=x onerror="window.__xss=1">'


class Cluster:
    """The default app, two gunicorn workers, one redis-server; test clients."""

    def __init__(self):
        self.redis = RedisServer().start()
        self.srv = None
        self.clients: list[SnorkyTestClient] = []
        try:
            self.srv = ServerProcess("gunicorn-gevent", app="snorky_sync.app:create_app()", workers=2, env={
                "SNORKY_REDIS_URL": self.redis.url, "SNORKY_TOKEN_SECRET": SECRET,
                "SNORKY_PUBSUB_PRESENCE": "1", "SNORKY_CLUSTER_HEARTBEAT": "0.2"})
            wait_broker(self.srv)
            # every worker has heard of the other: info() lists both, whichever answers
            wait_for(lambda: all(len(self.control("info")["processes"]) == 2 for _ in range(4)), 30,
                     "info() listing both workers")
        except BaseException:
            self.close()
            raise

    def control(self, command, **params):
        answer = self.srv.post_backend("control", {"command": command, "params": params, "callId": 1})
        assert answer.status_code == 200, answer.text
        message = answer.json()["message"]
        assert message["type"] == "response", message
        return message["data"]

    def connect(self, identity, *channels):
        token = ConnectionTokens(SECRET).create(identity)
        c = SnorkyTestClient(f"{self.srv.ws_url}/ws?token={quote(token)}")
        self.clients.append(c)
        for channel in channels:
            c.ok("pubsub", "subscribe", {"channel": channel})
        return c

    def workers_of(self, identity):
        """{pid: connections of identity there}, from both workers' listing."""
        listing = self.control("connections", service="pubsub")["processes"]
        return {p["pid"]: sum(c["identity"] == identity for c in p["clients"]) for p in listing}

    def close(self):
        for c in self.clients:
            c.close()
        if self.srv is not None:
            self.srv.stop()
        self.redis.kill()


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.close()


def open_operator(pages, cluster, key=API_KEY):
    (page,) = pages(1)
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(cluster.srv.url + "/backend/operator")
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")
    return page, urls


def identity_row(page, identity):
    return page.locator("#identities tbody tr", has=page.locator("td.identity", has_text=identity))


def test_the_page_lists_both_workers_and_disconnects_an_identity_on_both(cluster, pages, screenshot):
    # u42's pages, until both workers hold one; a bystander on a channel with presence
    u42 = [cluster.connect("u42", "ops-room", "ops-news") for _ in range(2)]
    for _ in range(100):
        if all(wait_for(lambda: cluster.workers_of("u42"), 10, "the listing").values()):
            break
        u42.append(cluster.connect("u42", "ops-room", "ops-news"))
    placed = cluster.workers_of("u42")
    assert len(placed) == 2 and all(placed.values()), placed
    bystander = cluster.connect("u7", "ops-room")

    page, urls = open_operator(pages, cluster)
    page.wait_for_selector("#workers tbody tr:nth-child(2)", timeout=T)
    assert page.locator("#workers tbody tr").count() == 2
    pids = {int(page.locator("#workers tbody tr").nth(i).locator("td").first.inner_text()) for i in range(2)}
    assert pids == set(placed)
    row = identity_row(page, "u42")
    row.wait_for(timeout=T)
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == str(len(u42))                     # its connections
    assert {int(p) for p in cells.nth(2).inner_text().split(", ")} == pids  # on both workers
    assert cells.nth(3).inner_text().split("\n") == ["ops-news", "ops-room"]
    # the channels with their subscribers and presence counts (the bystander included)
    room = page.locator("#channels tbody tr", has=page.locator("td.channel", has_text="ops-room"))
    room.wait_for(timeout=T)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#channels tbody tr')].some(r =>
               r.cells[0].textContent === 'ops-room' && r.cells[1].textContent === String(%d)
               && r.cells[2].textContent === String(%d) && r.cells[3].textContent === '2')"""
        % (len(u42) + 1, len(u42) + 1), timeout=T)
    room.locator("button.who").click()
    page.wait_for_selector("#presence-panel:not([hidden]) #presence tbody tr", timeout=T)
    assert page.locator("#presence tbody td.identity", has_text="u7").count() == 1
    screenshot(page, "listed")

    # Disconnect u42, no reconnect, with a reason: every page of it, on both workers
    row.locator("button.disconnect").click()
    page.uncheck("#reconnect")
    page.fill("#reason", "banned by the operator")
    page.click("#confirm")
    for c in u42:
        assert close_of(c.ws, 10) == (4003, "banned by the operator")
    page.wait_for_selector("#result:has-text('Disconnected u42')", timeout=T)
    identity_row(page, "u42").wait_for(state="detached", timeout=T)
    assert bystander.ok("pubsub", "subscribe", {"channel": "still-here"}) is None
    identity_row(page, "u7").wait_for(timeout=T)
    # the key went in a header only, never in a URL
    assert urls and not any(API_KEY in url for url in urls)


def test_a_wrong_key_shows_the_error_and_no_data(cluster, pages):
    cluster.connect("u-wrong-key", "ops-secret-channel")
    page, _ = open_operator(pages, cluster, key="not-the-key-0123456789")
    page.wait_for_selector("#error:not([hidden])", timeout=T)
    assert "refused this key" in page.inner_text("#error")
    assert page.locator("#main").is_hidden() and page.locator("#login").is_visible()
    for table in ("workers", "identities", "connections", "channels", "presence"):
        assert page.locator(f"#{table} tbody tr").count() == 0
    assert "u-wrong-key" not in page.content() and "ops-secret-channel" not in page.content()
    assert page.evaluate("sessionStorage.getItem('snorky-operator-key')") is None
    # the right key then shows the data
    page.fill("#key", API_KEY)
    page.click("#login-form button[type=submit]")
    identity_row(page, "u-wrong-key").wait_for(timeout=T)
    assert page.locator("#error").is_hidden()


def test_client_data_renders_as_text(cluster, pages):
    channel = '<b id="injected">chan</b>'
    cluster.connect(XSS, channel)
    cluster.connect({"html": "<script>window.__xss=2</script>"})
    page, _ = open_operator(pages, cluster)
    identity_row(page, XSS).wait_for(timeout=T)
    page.locator("#channels td.channel", has_text=channel).wait_for(timeout=T)
    identity_row(page, json.dumps({"html": "<script>window.__xss=2</script>"}, separators=(",", ":"))
                 ).wait_for(timeout=T)
    assert page.locator("#identities td.identity", has_text=XSS).first.inner_text() == XSS
    assert page.locator("main img, main b, main script").count() == 0
    assert page.locator("#injected").count() == 0
    assert page.evaluate("window.__xss") is None


def test_the_page_s_headers(cluster):
    answer = requests.get(cluster.srv.url + "/backend/operator", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'none'" in csp
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
    assert API_KEY not in answer.text and "<script>" not in answer.text  # no data, no inline script
    script = requests.get(cluster.srv.url + "/backend/operator/operator.js", timeout=10)
    assert script.status_code == 200 and script.headers["X-Frame-Options"] == "DENY"
    assert "textContent" in script.text and "innerHTML" not in script.text
    assert requests.get(cluster.srv.url + "/backend/operator/index.html", timeout=10).status_code == 404
    assert requests.get(cluster.srv.url + "/snorky_sync/static/operator.js", timeout=10).status_code == 404

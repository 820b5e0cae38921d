"""Cross-site hijacking through SockJS with a cookie identity (issue #21, items 1 and 13).

The victim is logged in (a Flask session cookie) at an app that identifies
its SockJS sessions by that cookie (``session_identity``).  A page on
another origin makes the victim's browser send that cookie on every
transport: JSONP and iframe loads carry no ``Origin``, XHR and EventSource a
foreign one.  Each attack below must neither open a session as the victim
nor read its answers, under every serving mode; the same requests from the
app's own origin keep working (so the refusals are the policy, not breakage).
"""
from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from .sockjs_support import EVIL, FORM, Stream, envelope, login, request, sid_url

RECEIVERS = [("POST", "xhr"), ("POST", "xhr_streaming"), ("GET", "eventsource"),
             ("GET", "htmlfile?c=cb"), ("GET", "jsonp?c=cb")]


def own(srv) -> str:
    return srv.url  # http://127.0.0.1:PORT, what the app's own pages send


def receive(method: str, url: str, headers: dict) -> tuple[int, dict, bytes]:
    """Status, headers and the first body chunks of a receive request."""
    s = Stream(method, url, headers, timeout=10)
    data = b""
    if s.status == 200:
        for _ in range(3):  # prelude, "o" (streaming), or the whole poll
            chunk = s.read()
            data += chunk
            if not chunk or b"o" in chunk.replace(b"h" * 2048, b""):
                break
    else:
        data = s.body()
    s.close()
    return s.status, s.headers, data


def no_credentialed_cors_for(headers: dict, origin: str) -> bool:
    return not (headers.get("access-control-allow-origin") == origin
                and headers.get("access-control-allow-credentials") == "true")


def test_jsonp_with_the_victims_cookie_and_no_origin(cookie_server):
    """A foreign page's <script src=".../jsonp"> and <form action=".../jsonp_send">:
    the victim's cookie, no Origin, no Referer (or a foreign one)."""
    cookie = login(cookie_server, "alice")
    for referer in (None, EVIL + "/attack.html"):
        headers = {"Cookie": cookie, **({"Referer": referer} if referer else {})}
        url = sid_url(cookie_server)
        r = request("GET", url + "/jsonp?c=steal", headers)
        assert r.status == 403, (referer, r.status, r.data)
        body = "d=" + urllib.parse.quote(json.dumps([envelope("who", "whoami")]))
        r = request("POST", url + "/jsonp_send", {**headers, **FORM}, body.encode())
        assert r.status in (403, 404), (referer, r.status, r.data)
        r = request("GET", url + "/jsonp?c=steal", headers)
        assert b"alice" not in r.data and r.status == 403
    # the app's own page (its Referer) still opens a session as alice
    url = sid_url(cookie_server)
    same = {"Cookie": cookie, "Referer": own(cookie_server) + "/page"}
    assert request("GET", url + "/jsonp?c=cb", same).data == b'/**/cb("o");\r\n'
    body = "d=" + urllib.parse.quote(json.dumps([envelope("who", "whoami")]))
    assert request("POST", url + "/jsonp_send", {**same, **FORM, "Origin": own(cookie_server)},
                   body.encode()).data == b"ok"
    assert b"alice" in request("GET", url + "/jsonp?c=cb", same).data


@pytest.mark.parametrize("method,transport", RECEIVERS)
def test_every_receiver_refuses_a_foreign_origin(cookie_server, method, transport):
    cookie = login(cookie_server, "alice")
    for headers in ({"Origin": EVIL}, {"Referer": EVIL + "/x.html"}, {"Origin": "null"}, {}):
        status, got, data = receive(method, f"{sid_url(cookie_server)}/{transport}",
                                    {"Cookie": cookie, **headers})
        assert status == 403, (headers, status, data)
        assert no_credentialed_cors_for(got, EVIL)
    # same origin: opened
    status, got, data = receive(method, f"{sid_url(cookie_server)}/{transport}",
                                {"Cookie": cookie, "Origin": own(cookie_server),
                                 "Referer": own(cookie_server) + "/page"})
    assert status == 200 and b"o" in data


def test_sends_from_a_foreign_origin_are_refused(cookie_server):
    """The victim's own session (opened by its page); the attacker's page
    posts into it with the victim's cookie from another origin."""
    cookie = login(cookie_server, "alice")
    url = sid_url(cookie_server)
    mine = {"Cookie": cookie, "Origin": own(cookie_server)}
    assert request("POST", url + "/xhr", mine).data == b"o\n"
    body = json.dumps([envelope("who", "whoami")]).encode()
    r = request("POST", url + "/xhr_send", {"Cookie": cookie, "Origin": EVIL}, body)
    assert r.status == 403 and no_credentialed_cors_for(r.headers, EVIL)
    r = request("POST", url + "/jsonp_send", {"Cookie": cookie, **FORM},
                b"d=" + urllib.parse.quote(body).encode())
    assert r.status == 403
    # the preflight a foreign page's XHR makes gets no credentialed CORS either
    r = request("OPTIONS", url + "/xhr_send", {"Origin": EVIL, "Cookie": cookie})
    assert no_credentialed_cors_for(r.headers, EVIL)
    assert request("POST", url + "/xhr_send", mine, body).status == 204
    assert b"alice" in request("POST", url + "/xhr", mine).data


def test_info_gives_no_credentialed_cors_to_a_foreign_origin(cookie_server):
    cookie = login(cookie_server, "alice")
    for method in ("GET", "OPTIONS"):
        r = request(method, cookie_server.url + "/sockjs/info", {"Origin": EVIL, "Cookie": cookie})
        assert no_credentialed_cors_for(r.headers, EVIL), (method, r.headers)
        assert r.headers.get("access-control-allow-origin") != "*" or \
            r.headers.get("access-control-allow-credentials") != "true"
    r = request("GET", cookie_server.url + "/sockjs/info", {"Origin": own(cookie_server)})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == own(cookie_server)
    assert r.headers["access-control-allow-credentials"] == "true"


def test_iframe_page_cannot_be_framed_by_another_site(cookie_server):
    r = request("GET", cookie_server.url + "/sockjs/iframe.html",
                {"Referer": own(cookie_server) + "/page"})
    assert r.status == 200
    csp = r.headers["content-security-policy"]
    assert csp.startswith("frame-ancestors 'self'") and "*" not in csp and EVIL not in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    r = request("GET", cookie_server.url + "/sockjs/iframe.html", {"Referer": EVIL + "/x.html"})
    assert r.status == 403


def test_the_anonymous_endpoint_keeps_every_origin(cookie_server):
    """Snorky 0.1's behaviour where cookies do not make the identity: any origin."""
    url = sid_url(cookie_server, "/sockjs-anon")
    r = request("POST", url + "/xhr", {"Origin": EVIL})
    assert r.data == b"o\n" and r.headers["access-control-allow-origin"] == EVIL
    assert request("GET", sid_url(cookie_server, "/sockjs-anon") + "/jsonp?c=cb").data == b'/**/cb("o");\r\n'


def test_refusals_log_no_raw_client_text(cookie_server):
    """A refused request's Origin and session id reach the log escaped (item 13)."""
    marker = "forged-line-7d1c"
    evil = f"{EVIL}\r\nINFO forged: {marker}\x1b[31m"
    cookie = login(cookie_server, "alice")
    url = f"{cookie_server.url}/sockjs/000/sid%0d%0a{marker}x/xhr"
    s = Stream("POST", url, {"Origin": evil.replace("\r\n", " "), "Cookie": cookie})
    s.close()
    # and the WebSocket endpoint's refused handshake
    from support.rawws import handshake
    sock, got = handshake(cookie_server.port, "/ws", origin=evil.replace("\r\n", " "))
    sock.close()
    status = got.split(b"\r\n")[0]
    # 403; 101 then a 1008 close (gevent-websocket); 400 where the server refuses the header itself
    assert b" 403 " in status or b" 101 " in status or b" 400 " in status, status
    # a raw CR/LF cannot ride in a header, but the path can carry them decoded
    for line in cookie_server.log().splitlines():
        if marker in line:
            assert "\x1b" not in line and not line.lstrip().startswith("INFO forged")


# -- a real browser --------------------------------------------------------------------------
CLIENT = Path(__file__).resolve().parents[1] / "sockjs" / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"

PAGE = """<!doctype html><html><body><script src="/__sockjs.js"></script><script>
window.attack = (url, transport) => new Promise((resolve) => {
  const sock = new SockJS(url, null, {transports: [transport], timeout: 6000});
  const got = [];
  sock.onopen = () => sock.send(JSON.stringify(
    {service: "who", message: {command: "whoami", params: {}, callId: 1}}));
  sock.onmessage = (e) => { got.push(e.data); resolve({opened: true, got}); sock.close(); };
  sock.onclose = (e) => resolve({opened: false, code: e.code, got});
  setTimeout(() => resolve({opened: null, got}), 15000);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def browser_server():
    from support.servers import free_port
    port = free_port()
    from support.servers import ServerProcess
    srv = ServerProcess("embedded", app="tests.security.cookie_app:app", port=port,
                        env={"SNORKY_SOCKJS_URL": f"http://127.0.0.1:{port}/__sockjs.js"})
    yield srv
    srv.stop()


@pytest.mark.skipif(not CLIENT.exists(), reason="sockjs-client not installed (scripts/test.sh installs it)")
@pytest.mark.parametrize("transport", ["iframe-xhr-polling", "jsonp-polling"])
def test_chromium_page_on_another_origin_cannot_use_the_victims_session(
        browser_server, playwright_instance, transport):
    """The issue's reproduction: the victim logged in, then visits a page on
    another origin of the same site (another port of 127.0.0.1, so the
    browser sends the session cookie), which drives sockjs-client."""
    from browser.conftest import CHROMIUM, FLAGS

    from support.servers import free_port
    evil = f"http://127.0.0.1:{free_port()}"
    client = CLIENT.read_bytes()
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=[*FLAGS, "--disable-features=LocalNetworkAccessChecks"])
    try:
        ctx = b.new_context()
        for origin in (browser_server.url, evil):
            ctx.route(origin + "/__page.html", lambda route: route.fulfill(
                body=PAGE, content_type="text/html; charset=utf-8"))
            ctx.route(origin + "/__sockjs.js", lambda route: route.fulfill(
                body=client, content_type="application/javascript"))
        page = ctx.new_page()
        page.goto(browser_server.url + "/login/alice")  # the victim's session cookie
        # the app's own page: works, as alice (the browser really sends the cookie)
        page.goto(browser_server.url + "/__page.html")
        result = page.evaluate("([u, t]) => attack(u, t)", [browser_server.url + "/sockjs", transport])
        assert result["opened"] and "alice" in "".join(result["got"]), result
        # the attacker's page
        page.goto(evil + "/__page.html")
        result = page.evaluate("([u, t]) => attack(u, t)", [browser_server.url + "/sockjs", transport])
        assert "alice" not in json.dumps(result), result
        assert not result["opened"], result
        ctx.close()
    finally:
        b.close()

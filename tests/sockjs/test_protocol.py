"""SockJS 0.3.3 conformance, case by case after sockjs-protocol's reference
suite (sockjs-protocol-0.3.3.py), against tests/sockjs/protocol_server.py
under every server kind.  Sessions expire after 2 s here (SOCKJS_DISCONNECT_DELAY)."""
import json
import re
import uuid

import pytest
import websocket

from support.waiting import wait_for

from .rawhttp import Stream, request

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"


@pytest.fixture
def base(sockjs_server):
    return sockjs_server.url + "/echo"


@pytest.fixture
def top(sockjs_server):
    return sockjs_server.url


def sid_url(base):
    return f"{base}/000/{uuid.uuid4()}"


def ctype(r):
    return r.headers.get("content-type", "").replace(" ", "")


def assert_cors(r, origin=None):
    """An origin (``null`` too) is echoed with credentials; no Origin: ``*``, without."""
    if origin:
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
    else:
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers


def assert_not_cached(r):
    assert r.headers["cache-control"] == NO_CACHE
    assert "expires" not in r.headers and "last-modified" not in r.headers


def assert_options(url, methods):
    for origin in (None, "http://test", "null"):
        r = request("OPTIONS", url, {"Origin": origin} if origin else {})
        assert r.status == 204
        assert "public" in r.headers["cache-control"]
        assert re.search("max-age=[1-9][0-9]{6}", r.headers["cache-control"])
        assert r.headers["expires"]
        assert int(r.headers["access-control-max-age"]) > 1000000
        assert r.headers["access-control-allow-methods"] == methods
        assert not r.data
        assert_cors(r, origin)


# -- static URLs -----------------------------------------------------------------
def test_greeting_and_not_found(base):
    for url in (base, base + "/"):
        r = request("GET", url)
        assert (r.status, ctype(r), r.data) == (200, "text/plain;charset=UTF-8", b"Welcome to SockJS!\n")
        assert "set-cookie" not in r.headers
    for suffix in ("/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"):
        assert request("GET", base + suffix).status == 404, suffix


IFRAME = re.compile(r'^<!DOCTYPE html>\n<html>\n<head>\n.*  <script src="(?P<url>[^"]*)"></script>\n'
                    r"  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe\(\);\n"
                    r"  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>.*</html>$", re.S)


def test_iframe_page(base):
    etags = set()
    for suffix in ("/iframe.html", "/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html",
                   "/iframe-0.1.2abc-dirty.2144.html", "/iframe-a.html?t=1234"):
        r = request("GET", base + suffix)
        assert r.status == 200 and ctype(r) == "text/html;charset=UTF-8"
        assert "public" in r.headers["cache-control"]
        assert re.search("max-age=[1-9][0-9]{6}", r.headers["cache-control"])
        assert r.headers["expires"] and "last-modified" not in r.headers
        m = IFRAME.match(r.data.decode().strip())
        assert m and m.group("url") == "/sockjs-client.js"
        assert "document.domain = document.domain;" in r.data.decode()
        etags.add(r.headers["etag"])
    assert len(etags) == 1
    r = request("GET", base + "/iframe.html", {"If-None-Match": etags.pop()})
    assert r.status == 304 and "content-type" not in r.headers and not r.data
    for suffix in ("/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML",
                   "/iframe.xml", "/iframe-/.html"):
        assert request("GET", base + suffix).status == 404, suffix


def test_info(top, base):
    r = request("GET", base + "/info")
    assert r.status == 200 and ctype(r) == "application/json;charset=UTF-8"
    assert "set-cookie" not in r.headers
    assert_not_cached(r)
    assert_cors(r)
    data = json.loads(r.data)
    assert data["websocket"] is True and data["cookie_needed"] is False
    assert data["origins"] == ["*:*"]
    e2 = json.loads(request("GET", base + "/info").data)["entropy"]
    assert isinstance(data["entropy"], int) and 0 <= data["entropy"] < 2 ** 32
    assert data["entropy"] != e2
    assert_options(base + "/info", "OPTIONS, GET")
    assert json.loads(request("GET", top + "/disabled_websocket_echo/info").data)["websocket"] is False
    assert request("GET", top + "/disabled_websocket_echo/0/0/websocket").status == 404
    assert json.loads(request("GET", top + "/cookie_needed_echo/info").data)["cookie_needed"] is True


# -- sessions and framing -----------------------------------------------------------
def test_session_urls(base):
    for part in ("/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"):
        r = request("POST", base + part + "/xhr")
        assert (r.status, r.data) == (200, b"o\n"), part
    for part in ("//", "/a./a", "/a/a.", "/./.", "/", "///"):
        assert request("GET", base + part + "/xhr").status == 404, part
        assert request("POST", base + part + "/xhr").status == 404, part
    sid = str(uuid.uuid4())
    assert request("POST", f"{base}/000/{sid}/xhr").data == b"o\n"
    assert request("POST", f"{base}/000/{sid}/xhr_send", body=b'["a"]').status == 204
    assert request("POST", f"{base}/999/{sid}/xhr").data == b'a["a"]\n'  # server id ignored


def test_simple_session_and_second_receiver(base):
    url = sid_url(base)
    assert request("POST", url + "/xhr").data == b"o\n"
    r = request("POST", url + "/xhr_send", body=b'["a"]')
    assert (r.status, r.data) == (204, b"")
    assert request("POST", url + "/xhr").data == b'a["a"]\n'
    assert request("POST", base + "/000/bad_session/xhr_send", body=b'["a"]').status == 404
    pending = Stream("POST", url + "/xhr", lazy=True)  # waits: nothing queued
    r2 = request("POST", url + "/xhr")
    assert (r2.status, r2.data) == (200, b'c[2010,"Another connection still open"]\n')
    # the first receiver is still the session's: it gets the next message
    assert request("POST", url + "/xhr_send", body=b'["b"]').status == 204
    assert pending.read() == b'a["b"]\n'
    pending.close()


def test_close_session(top):
    url = sid_url(top + "/close")
    assert request("POST", url + "/xhr").data == b"o\n"
    for _ in range(2):  # served again until the session expires
        r = request("POST", url + "/xhr")
        assert (r.status, r.data) == (200, b'c[3000,"Go away!"]\n')


def test_session_expires_without_receiver(base):
    url = sid_url(base)
    assert request("POST", url + "/xhr").data == b"o\n"
    wait_for(lambda: request("POST", url + "/xhr_send", body=b'["x"]').status == 404, 10,
             "the session to expire", interval=0.2)
    assert request("POST", url + "/xhr").data == b"o\n"  # a new session under the same id


# -- WebSocket -------------------------------------------------------------------------
def ws_url(url):
    return "ws" + url[4:]


def test_websocket_http_errors(base):
    r = request("GET", base + "/0/0/websocket")
    assert r.status == 400 and b'Can "Upgrade" only to "WebSocket".' in r.data
    r = request("GET", base + "/0/0/websocket", {"Upgrade": "WebSocket", "Connection": "close"})
    assert r.status == 400 and b'"Connection" must be "Upgrade".' in r.data
    r = request("POST", base + "/0/0/websocket")
    assert r.status == 405 and r.headers["allow"] == "GET"
    assert "content-type" not in r.headers and not r.data


def test_websocket_transport(base, top):
    url = ws_url(sid_url(base)) + "/websocket"
    ws = websocket.create_connection(url, timeout=5)
    assert ws.recv() == "o"
    ws.send("")  # empty frames are ignored
    ws.send('["a"]')
    assert ws.recv() == 'a["a"]'
    ws.send('"b"')
    assert ws.recv() == 'a["b"]'
    ws2 = websocket.create_connection(url, timeout=5)  # the same session id twice: two sessions
    assert ws2.recv() == "o"
    ws2.send('["c"]')
    assert ws2.recv() == 'a["c"]'
    ws.close()
    ws2.close()
    ws = websocket.create_connection(ws_url(sid_url(top + "/close")) + "/websocket", timeout=5)
    assert ws.recv() == "o"
    assert ws.recv() == 'c[3000,"Go away!"]'
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        if not ws.recv():
            raise websocket.WebSocketConnectionClosedException()
    assert ws.close_status if hasattr(ws, "close_status") else True
    ws = websocket.create_connection(url, timeout=5)
    assert ws.recv() == "o"
    ws.send('["a')  # broken JSON: the connection is cut
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        if not ws.recv():
            raise websocket.WebSocketConnectionClosedException()


def test_websocket_hybi_versions(base):
    for version in ("7", "8", "13"):
        r = Stream("GET", sid_url(base) + "/websocket", {
            "Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
            "Sec-WebSocket-Version": version, "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw=="})
        assert r.status == 101, version
        assert r.headers["sec-websocket-accept"] == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        assert "content-length" not in r.headers
        r.close()


def test_raw_websocket(base, top):
    ws = websocket.create_connection(ws_url(base) + "/websocket", timeout=5)
    ws.send("Hello world!\uffff")
    assert ws.recv() == "Hello world!\uffff"
    ws.close()
    ws = websocket.create_connection(ws_url(top + "/close") + "/websocket", timeout=5)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        if not ws.recv():
            raise websocket.WebSocketConnectionClosedException()


# -- xhr ---------------------------------------------------------------------------------
def test_xhr_polling(base):
    for suffix in ("/xhr", "/xhr_send"):
        assert_options(base + "/abc/abc" + suffix, "OPTIONS, POST")
    url = sid_url(base)
    r = request("POST", url + "/xhr", {"Origin": "http://example.test"})
    assert (r.status, r.data) == (200, b"o\n")
    assert ctype(r) == "application/javascript;charset=UTF-8"
    assert_cors(r, "http://example.test")
    assert_not_cached(r)
    r = request("POST", url + "/xhr_send", body=b'["x"]')
    assert (r.status, r.data) == (204, b"")
    assert ctype(r) == "text/plain;charset=UTF-8"
    assert_cors(r)
    assert_not_cached(r)
    assert request("POST", url + "/xhr").data == b'a["x"]\n'
    assert request("POST", sid_url(base) + "/xhr_send", body=b'["x"]').status == 404


def test_xhr_bad_bodies_do_not_hurt_the_session(base):
    url = sid_url(base)
    other = sid_url(base)
    assert request("POST", url + "/xhr").data == b"o\n"
    assert request("POST", other + "/xhr").data == b"o\n"
    for body, text in ((b'["x', b"Broken JSON encoding."), (b"", b"Payload expected."),
                       (b'{"a": 1}', b"Broken JSON encoding."), (b"[1, 2]", b"Broken JSON encoding.")):
        r = request("POST", url + "/xhr_send", body=body)
        assert r.status == 500 and text in r.data, body
    # refused before any session lookup (a fresh id would be 404 otherwise)
    r = request("POST", sid_url(base) + "/xhr_send", body=b'["' + b"x" * (11 * 1024 * 1024) + b'"]')
    assert r.status == 413
    assert request("POST", url + "/xhr_send", body=b'["a"]').status == 204
    assert request("POST", other + "/xhr_send", body=b'["b"]').status == 204
    assert request("POST", url + "/xhr").data == b'a["a"]\n'
    assert request("POST", other + "/xhr").data == b'a["b"]\n'


def test_xhr_content_types_and_cors_headers(base):
    url = sid_url(base)
    assert request("POST", url + "/xhr").data == b"o\n"
    ctypes = ["text/plain", "T", "application/json", "application/xml", "",
              "application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml"]
    for ct in ctypes:
        assert request("POST", url + "/xhr_send", {"Content-Type": ct}, b'["a"]').status == 204
    assert request("POST", url + "/xhr").data == b"a[" + b",".join([b'"a"'] * len(ctypes)) + b"]\n"
    r = request("POST", sid_url(base) + "/xhr", {"Access-Control-Request-Headers": "a, b, c"})
    assert r.headers["access-control-allow-headers"] == "a, b, c"
    r = request("POST", sid_url(base) + "/xhr", {"Access-Control-Request-Headers": ""})
    assert "access-control-allow-headers" not in r.headers


def test_xhr_streaming(base):
    assert_options(base + "/abc/abc/xhr_streaming", "OPTIONS, POST")
    url = sid_url(base)
    r = Stream("POST", url + "/xhr_streaming")
    assert r.status == 200 and ctype(r) == "application/javascript;charset=UTF-8"
    assert_cors(r)
    assert_not_cached(r)
    assert r.read() == b"h" * 2048 + b"\n"
    assert r.read() == b"o\n"
    assert request("POST", url + "/xhr_send", body=b'["x"]').status == 204
    assert r.read() == b'a["x"]\n'
    r.close()
    # the test server ends a streaming response after 4096 bytes
    url = sid_url(base)
    r = Stream("POST", url + "/xhr_streaming")
    assert r.read() and r.read() == b"o\n"
    msg = b'"' + b"x" * 128 + b'"'
    for _ in range(31):
        assert request("POST", url + "/xhr_send", body=b"[" + msg + b"]").status == 204
        assert r.read() == b"a[" + msg + b"]\n"
    assert r.read() == b""


def test_eventsource(base):
    url = sid_url(base)
    r = Stream("GET", url + "/eventsource")
    assert r.status == 200 and ctype(r) == "text/event-stream"
    assert_not_cached(r)
    assert r.read() == b"\r\n"
    assert r.read() == b"data: o\r\n\r\n"
    assert request("POST", url + "/xhr_send", body=b'["x"]').status == 204
    assert r.read() == b'data: a["x"]\r\n\r\n'
    assert request("POST", url + "/xhr_send", body=rb'["  \u0000\n\r "]').status == 204
    assert r.read() == b'data: a["  \\u0000\\n\\r "]\r\n\r\n'
    r.close()
    url = sid_url(base)
    r = Stream("GET", url + "/eventsource")
    assert r.read() and r.read() == b"data: o\r\n\r\n"
    msg = b'"' + b"x" * 4096 + b'"'
    assert request("POST", url + "/xhr_send", body=b"[" + msg + b"]").status == 204
    assert r.read() == b"data: a[" + msg + b"]\r\n\r\n"
    assert r.read() == b""


HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


def test_htmlfile(base):
    url = sid_url(base)
    r = Stream("GET", url + "/htmlfile?c=%63allback")
    assert r.status == 200 and ctype(r) == "text/html;charset=UTF-8"
    assert_not_cached(r)
    head = r.read()
    assert head.decode().strip() == HTMLFILE_HEAD % "callback" and len(head) > 1024
    assert r.read() == b'<script>\np("o");\n</script>\r\n'
    assert request("POST", url + "/xhr_send", body=b'["x"]').status == 204
    assert r.read() == b'<script>\np("a[\\"x\\"]");\n</script>\r\n'
    r.close()
    r = request("GET", base + "/a/a/htmlfile")
    assert r.status == 500 and b'"callback" parameter required' in r.data
    r = request("GET", base + "/a/a/htmlfile?c=alert(1)")
    assert r.status == 500 and b'invalid "callback" parameter' in r.data
    url = sid_url(base)
    r = Stream("GET", url + "/htmlfile?c=callback")
    assert r.read() and r.read() == b'<script>\np("o");\n</script>\r\n'
    msg = "x" * 4096
    assert request("POST", url + "/xhr_send", body=('["' + msg + '"]').encode()).status == 204
    assert r.read() == ('<script>\np("a[\\"' + msg + '\\"]");\n</script>\r\n').encode()
    assert r.read() == b""


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_jsonp(base, top):
    url = sid_url(base)
    r = request("GET", url + "/jsonp?c=%63allback")
    assert r.status == 200 and ctype(r) == "application/javascript;charset=UTF-8"
    assert_not_cached(r)
    assert r.data == b'/**/callback("o");\r\n'
    r = request("POST", url + "/jsonp_send", FORM, b"d=%5B%22x%22%5D")
    assert (r.status, r.data, ctype(r)) == (200, b"ok", "text/plain;charset=UTF-8")
    assert_not_cached(r)
    assert request("GET", url + "/jsonp?c=%63allback").data == b'/**/callback("a[\\"x\\"]");\r\n'
    r = request("GET", base + "/a/a/jsonp")
    assert r.status == 500 and b'"callback" parameter required' in r.data
    url = sid_url(base)
    assert request("GET", url + "/jsonp?c=x").data == b'/**/x("o");\r\n'
    r = request("POST", url + "/jsonp_send", FORM, b"d=%5B%22x")
    assert r.status == 500 and b"Broken JSON encoding." in r.data
    for data in (b"", b"d=", b"p=p"):
        r = request("POST", url + "/jsonp_send", FORM, data)
        assert r.status == 500 and b"Payload expected." in r.data
    assert request("POST", url + "/jsonp_send", FORM, b"d=%5B%22abc%22%5D").data == b"ok"
    assert request("POST", url + "/jsonp_send", {"Content-Type": "text/plain"}, b'["%61bc"]').data == b"ok"
    assert request("GET", url + "/jsonp?c=x").data == b'/**/x("a[\\"abc\\",\\"%61bc\\"]");\r\n'
    url = sid_url(top + "/close")
    assert request("GET", url + "/jsonp?c=x").data == b'/**/x("o");\r\n'
    for _ in range(2):
        assert request("GET", url + "/jsonp?c=x").data == b'/**/x("c[3000,\\"Go away!\\"]");\r\n'


def test_jsessionid_cookie(top):
    base = top + "/cookie_needed_echo"
    assert "set-cookie" not in request("GET", base + "/info").headers

    def cookie(r):
        parts = [p.strip() for p in r.headers["set-cookie"].split(";")]
        return parts[0], parts[1].lower()

    assert cookie(request("POST", sid_url(base) + "/xhr")) == ("JSESSIONID=dummy", "path=/")
    r = request("POST", sid_url(base) + "/xhr", {"Cookie": "JSESSIONID=abcdef"})
    assert cookie(r) == ("JSESSIONID=abcdef", "path=/")
    for method, suffix in (("POST", "/xhr_streaming"), ("GET", "/eventsource"),
                           ("GET", "/htmlfile?c=cb")):
        s = Stream(method, sid_url(base) + suffix)
        assert s.status == 200 and cookie(s) == ("JSESSIONID=dummy", "path=/")
        s.close()
    url = sid_url(base)
    r = request("GET", url + "/jsonp?c=cb")
    assert cookie(r) == ("JSESSIONID=dummy", "path=/") and r.data == b'/**/cb("o");\r\n'
    r = request("POST", url + "/jsonp_send", FORM, b"d=%5B%22x%22%5D")
    assert r.data == b"ok" and cookie(r) == ("JSESSIONID=dummy", "path=/")


# -- unicode -----------------------------------------------------------------------------
ESCAPED_BY_SERVER = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")


def test_json_encoding(base):
    url = sid_url(base)
    assert request("POST", url + "/xhr").data == b"o\n"
    chars = "".join(chr(i) for i in range(255, 65536) if ESCAPED_BY_SERVER.match(chr(i)))
    assert request("POST", url + "/xhr_send", body=json.dumps([chars]).encode()).status == 204
    got = request("POST", url + "/xhr").data.strip()[2:-1]
    assert got == ('"' + "".join("\\u%04x" % ord(c) for c in chars) + '"').encode()
    # what clients escape comes back as the same characters
    sent = "".join(chr(i) for i in (0x7f, 0xad, 0x600, 0x2000, 0x20ff, 0xfeff, 0x0300, 0xfb1d))
    assert request("POST", url + "/xhr_send", body=json.dumps([sent]).encode()).status == 204
    assert json.loads(request("POST", url + "/xhr").data.strip()[2:-1]) == sent


# -- closing ------------------------------------------------------------------------------
def test_close_frame_to_every_receiver(top):
    url = sid_url(top + "/close")
    r1 = Stream("POST", url + "/xhr_streaming")
    r1.read()
    assert r1.read() == b"o\n"
    assert r1.read() == b'c[3000,"Go away!"]\n'
    r2 = Stream("POST", url + "/xhr_streaming")
    r2.read()
    assert r2.read() == b'c[3000,"Go away!"]\n'
    assert r1.read() == b"" and r2.read() == b""


def test_second_streaming_receiver_refused(base):
    url = sid_url(base)
    r1 = Stream("POST", url + "/xhr_streaming")
    r1.read()
    assert r1.read() == b"o\n"
    r2 = Stream("POST", url + "/xhr_streaming")
    r2.read()
    assert r2.read() == b'c[2010,"Another connection still open"]\n'
    assert r2.read() == b""
    r1.close()


@pytest.mark.parametrize("transport", ["xhr_streaming", "xhr"])
def test_receiver_aborted_by_client_interrupts_the_session(base, transport):
    """The very next request after the abort finds the session interrupted,
    not held by the aborted request (2010): the server looks at the pending
    request's socket then, not only when its read watcher gets to run (a race
    it lost one time in ten to three, before).  Ten sessions in a row."""
    for _ in range(10):
        url = sid_url(base)
        if transport == "xhr":
            assert request("POST", url + "/xhr").data == b"o\n"
        r1 = Stream("POST", url + "/" + transport, lazy=True)
        if transport == "xhr_streaming":
            r1.read()
            assert r1.read() == b"o\n"
        r2 = request("POST", url + "/" + transport)
        assert r2.data.endswith(b'c[2010,"Another connection still open"]\n')
        r1.close()  # the client goes away while its request waits
        assert request("POST", url + "/xhr").data == b'c[1002,"Connection interrupted"]\n'


def test_http10_and_http11_streaming(top):
    url = sid_url(top + "/close")
    c = Stream("POST", url + "/xhr_streaming", {"Connection": "Keep-Alive"}, http="1.0")
    assert c.status == 200
    assert "transfer-encoding" not in c.headers and "content-length" not in c.headers
    data = c.body()
    assert data == b"h" * 2048 + b"\n" + b"o\n" + b'c[3000,"Go away!"]\n'
    url = sid_url(top + "/close")
    c = Stream("POST", url + "/xhr_streaming", {"Connection": "Keep-Alive"})
    assert c.headers["transfer-encoding"].lower() == "chunked" and "content-length" not in c.headers
    assert c.read()[:1] == b"h"
    assert c.read() == b"o\n"
    assert c.read() == b'c[3000,"Go away!"]\n'
    assert c.read() == b""
    c.close()
    r = request("GET", top + "/echo", {"Connection": "Keep-Alive"}, http="1.0")
    assert r.status == 200 and r.data == b"Welcome to SockJS!\n"

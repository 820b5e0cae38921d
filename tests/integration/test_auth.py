"""Identities: Flask session and signed connection tokens, under every server kind."""
import time

import pytest
import requests
import websocket
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from snorky_sync.auth import TOKEN_SALT, ConnectionTokens
from support.wsclient import SnorkyTestClient

SECRET = "integration-token-secret-0123456789"


def refused(server, path, **kwargs):
    """Open ``path``; return the HTTP status or, under gevent-websocket, the close code."""
    try:
        ws = websocket.create_connection(server.ws_url + path, timeout=30, **kwargs)  # a loaded CI machine
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    try:
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        return int.from_bytes(data[:2], "big")
    finally:
        ws.close()


def expect_refusal(server, path, status, **kwargs):
    got = refused(server, path, **kwargs)
    if server.mode == "gunicorn-geventwebsocket":
        assert got == 1008  # the upgrade already happened: policy-violation close
    else:
        assert got == status


def test_anonymous_by_default(server, connect):
    assert connect("/ws").ok("who", "whoami") is None


def test_identity_cannot_be_spoofed_through_params(server, connect):
    assert connect("/ws").ok("who", "whoami", {"identity": "admin", "user": "root"}) is None


def test_token_identity(server):
    token = requests.get(server.url + "/token/alice", timeout=5).text
    c = SnorkyTestClient(f"{server.ws_url}/ws-token?token={token}")
    assert c.ok("who", "whoami") == {"user": "alice"}
    c.close()
    # made by the application with the library, not by the server
    c = SnorkyTestClient(f"{server.ws_url}/ws-token?token={ConnectionTokens(SECRET).create([1, 'x'])}")
    assert c.ok("who", "whoami") == [1, "x"]
    c.close()


def test_missing_token(server):
    assert SnorkyTestClient(server.ws_url + "/ws-token").ok("who", "whoami") is None  # anonymous allowed
    expect_refusal(server, "/ws-token-required", 401)


def test_tampered_and_foreign_tokens_are_refused(server):
    token = ConnectionTokens(SECRET).create("alice")
    payload, rest = token.split(".", 1)
    forged = ConnectionTokens(SECRET).create("admin").split(".", 1)[0] + "." + rest
    expect_refusal(server, f"/ws-token?token={forged}", 403)
    expect_refusal(server, f"/ws-token?token={token[:-2]}xx", 403)
    foreign = ConnectionTokens("another-secret-0123456789abcdef").create("alice")
    expect_refusal(server, f"/ws-token?token={foreign}", 403)


def test_expired_token_is_refused(server):
    class OneHourAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 3600

    old = URLSafeTimedSerializer(SECRET, salt=TOKEN_SALT, signer=OneHourAgo).dumps({"identity": "alice"})
    expect_refusal(server, f"/ws-token?token={old}", 401)  # max_age is 60 s


def test_flask_session_identity(server):
    expect_refusal(server, "/ws-session", 401)
    s = requests.Session()
    s.get(server.url + "/login/bob", timeout=5)
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    c = SnorkyTestClient(server.ws_url + "/ws-session", cookie=cookie)
    assert c.ok("who", "whoami") == "bob"
    c.close()


def login_cookie(server, user):
    s = requests.Session()
    s.get(server.url + f"/login/{user}", timeout=5)
    return "; ".join(f"{k}={v}" for k, v in s.cookies.items())


def test_cookie_identity_refuses_foreign_origins(server):
    """Cross-site WebSocket hijacking: a page on evil.example opening our /ws-session
    carries alice's cookie; it must not become alice."""
    cookie = login_cookie(server, "alice")
    expect_refusal(server, "/ws-session", 403, cookie=cookie, origin="http://evil.example")
    expect_refusal(server, "/ws-session", 403, cookie=cookie, origin="null")
    # a look-alike host: same name, other port
    port = server.url.rsplit(":", 1)[1]
    expect_refusal(server, "/ws-session", 403, cookie=cookie,
                   origin=f"http://127.0.0.1:{int(port) + 1}")
    # the page's own origin (http or https: a TLS-terminating proxy hides the scheme)
    for origin in (server.url, server.url.replace("http://", "https://")):
        c = SnorkyTestClient(server.ws_url + "/ws-session", cookie=cookie, origin=origin)
        assert c.ok("who", "whoami") == "alice"
        c.close()
    # no Origin at all: not a browser, so no borrowed cookie
    c = SnorkyTestClient(server.ws_url + "/ws-session", cookie=cookie, suppress_origin=True)
    assert c.ok("who", "whoami") == "alice"
    c.close()


def test_cookie_identity_behind_a_proxy_and_with_an_allowlist(server):
    cookie = login_cookie(server, "alice")
    # public origin configured: the Host (127.0.0.1) no longer counts
    c = SnorkyTestClient(server.ws_url + "/ws-session-proxied", cookie=cookie,
                         origin="https://app.example")
    assert c.ok("who", "whoami") == "alice"
    c.close()
    expect_refusal(server, "/ws-session-proxied", 403, cookie=cookie, origin=server.url)
    expect_refusal(server, "/ws-session-proxied", 403, cookie=cookie, origin="http://app.example")
    # an allowlist replaces the same-origin rule
    c = SnorkyTestClient(server.ws_url + "/ws-session-allowed", cookie=cookie,
                         origin="http://partner.example")
    assert c.ok("who", "whoami") == "alice"
    c.close()
    expect_refusal(server, "/ws-session-allowed", 403, cookie=cookie, origin=server.url)


def test_token_and_anonymous_endpoints_accept_every_origin(server):
    """Snorky 0.1's behaviour where no cookie is involved."""
    token = requests.get(server.url + "/token/carol", timeout=5).text
    c = SnorkyTestClient(server.ws_url + f"/ws-token?token={token}", origin="http://evil.example")
    assert c.ok("who", "whoami") == {"user": "carol"}
    c.close()
    c = SnorkyTestClient(server.ws_url + "/ws", origin="http://evil.example")
    assert c.ok("who", "whoami") is None
    c.close()


def test_short_token_secret_is_refused():
    with pytest.raises(ValueError):
        ConnectionTokens("short")

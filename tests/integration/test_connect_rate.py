"""Connection-rate limits: 503 + Retry-After before any other work for the handshake."""
import pytest
import websocket

from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient


def status_of(srv, path="/ws", **kwargs):
    """HTTP status of a refused handshake (and its Retry-After), or 101 when it opened;
    under gevent-websocket a refusal is a close frame right after the upgrade."""
    try:
        ws = websocket.create_connection(srv.ws_url + path, timeout=10, **kwargs)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code, (exc.resp_headers or {}).get("retry-after")
    try:
        # a call as the marker: a refused connection's close frame comes before any answer
        try:
            ws.send('{"service": "calc", "message": {"command": "add", "params": {"a": 1}, "callId": 1}}')
        except (OSError, websocket.WebSocketConnectionClosedException):
            pass  # already closed by the server: its close frame is there to read
        # the raw frame: recv_data answers a close frame itself, and that write
        # fails (broken pipe) when the server has already closed the socket
        frame = ws.recv_frame()
        opcode, data = frame.opcode, frame.data
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return 101, None
        assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, data)
        return int.from_bytes(data[:2], "big"), None
    finally:
        ws.close()


@pytest.fixture(params=["embedded", "gunicorn-geventwebsocket"])
def limited(request):
    srv = ServerProcess(request.param, app="tests.integration.testapp:app", env={
        "SNORKY_CONNECT_RATE": "0.01", "SNORKY_CONNECT_BURST": "4"})
    yield srv
    srv.stop()


def test_global_rate_answers_503_with_retry_after_before_origin_and_auth(limited):
    clients = [SnorkyTestClient(limited.ws_url + "/ws") for _ in range(4)]  # the burst
    refused = 1013 if limited.mode == "gunicorn-geventwebsocket" else 503
    status, retry = status_of(limited)
    assert status == refused
    if refused == 503:
        assert retry is not None and int(retry) >= 1
    # refused before the origin check and authenticate run: a foreign origin with no
    # cookie on a cookie endpoint gets the same 503, not 403 / 401
    assert status_of(limited, "/ws-session", origin="http://evil.example")[0] == refused
    # the open connections are untouched
    for c in clients:
        assert c.ok("who", "whoami") is None
    counters = clients[0].ok("inspect", "state")["counters"]
    assert counters["connections_refused_rate"] == 2
    for c in clients:
        c.close()


def test_per_address_rate_behind_a_trusted_proxy():
    srv = ServerProcess("embedded", app="tests.integration.testapp:app", env={
        "SNORKY_CONNECT_RATE_PER_IP": "0.01", "SNORKY_CONNECT_BURST_PER_IP": "2",
        "SNORKY_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        def via(addr):
            return status_of(srv, header=[f"X-Forwarded-For: 198.51.100.7, {addr}"])[0]
        assert [via("10.0.0.1") for _ in range(3)] == [101, 101, 503]
        assert via("10.0.0.2") == 101            # another client address has its own bucket
        assert via("10.0.0.1") == 503
    finally:
        srv.stop()


def test_untrusted_forwarded_for_is_ignored():
    srv = ServerProcess("embedded", app="tests.integration.testapp:app", env={
        "SNORKY_CONNECT_RATE_PER_IP": "0.01", "SNORKY_CONNECT_BURST_PER_IP": "2"})
    try:
        got = [status_of(srv, header=[f"X-Forwarded-For: 10.0.0.{i}"])[0] for i in range(3)]
        assert got == [101, 101, 503]  # all from 127.0.0.1, whatever the header claims
    finally:
        srv.stop()


def test_new_sockjs_sessions_count_against_the_rate_too():
    import requests

    srv = ServerProcess("embedded", app="tests.integration.testapp:app", env={
        "SNORKY_CONNECT_RATE": "0.01", "SNORKY_CONNECT_BURST": "2"})
    try:
        opened = [requests.post(f"{srv.url}/sockjs/000/s{i}/xhr", timeout=10) for i in range(2)]
        assert [(r.status_code, r.text) for r in opened] == [(200, "o\n"), (200, "o\n")]
        refused = requests.post(f"{srv.url}/sockjs/000/s9/xhr", timeout=10)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        again = requests.post(f"{srv.url}/sockjs/000/s0/xhr_send", timeout=10,   # an open session: served
                              data='["{\\"service\\": \\"echo\\", \\"message\\": 1}"]')
        assert again.status_code == 204
    finally:
        srv.stop()

"""PROTOCOL.md §5: pings and dead peers, origin allowlist — under every server kind."""
import base64
import os
import time

import pytest
import websocket

from support.rawws import handshake
from support.servers import WORKER_CLASSES, ServerProcess
from support.wsclient import SnorkyTestClient


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def pinging_server(request):
    srv = ServerProcess(request.param, app="tests.integration.testapp:app",
                        env={"SNORKY_PING_INTERVAL": "0.5", "SNORKY_ALLOWED_ORIGINS": "https://good.example"})
    yield srv
    srv.stop()


def test_server_pings_and_drops_a_peer_that_never_answers(pinging_server):
    s, head = handshake(pinging_server.port, origin="https://good.example")
    assert head.startswith(b"HTTP/1.1 101")
    s.settimeout(15)
    data = head.split(b"\r\n\r\n", 1)[1]
    started = time.monotonic()
    while True:  # never answer: read until the server gives up on us
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"\x89\x00" in data  # at least one ping
    assert time.monotonic() - started < 12
    assert "no answer to ping" in pinging_server.log()


def test_a_peer_that_answers_pings_stays(pinging_server):
    c = SnorkyTestClient(pinging_server.ws_url + "/ws", origin="https://good.example")
    try:
        # websocket-client answers each ping with a pong as it reads it
        c.ws.settimeout(5)
        pings = 0
        while pings < 4:  # four intervals: long past the point a silent peer is dropped
            opcode, _ = c.ws.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_PING
            pings += 1
        assert c.call("calc", "add", {"a": 1})["data"] == 1
    finally:
        c.close()


def test_origin_allowlist(pinging_server):
    s, head = handshake(pinging_server.port, origin="https://evil.example")
    try:
        if pinging_server.mode == "gunicorn-geventwebsocket":
            # gevent-websocket upgrades before the app runs: the refusal is a 1008 close
            assert head.startswith(b"HTTP/1.1 101")
            s.settimeout(10)
            frame = head.split(b"\r\n\r\n", 1)[1]  # bytes after the 101 came in the same read
            while len(frame) < 4:
                chunk = s.recv(4096)
                assert chunk
                frame += chunk
            assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1008
        else:
            assert head.startswith(b"HTTP/1.1 403")
    finally:
        s.close()
    c = SnorkyTestClient(pinging_server.ws_url + "/ws", origin="https://good.example")
    assert c.call("calc", "add", {"a": 2})["data"] == 2
    c.close()


def test_exactly_one_101_even_under_gevent_websocket(pinging_server):
    """flask-sock would answer a second 101 under the geventwebsocket worker; we adopt its socket."""
    s, head = handshake(pinging_server.port, origin="https://good.example")
    try:
        s.settimeout(0.3)
        rest = head
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except TimeoutError:
            pass
        assert rest.count(b"HTTP/1.1 101") == 1
    finally:
        s.close()


@pytest.mark.parametrize("mode", ["gunicorn-gevent", "gunicorn-geventwebsocket"])
def test_open_websockets_do_not_count_against_worker_connections(mode):
    from support.servers import free_port
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-k", WORKER_CLASSES[mode],
                              "--worker-connections", "10", "-b", f"127.0.0.1:{port}",
                              "tests.integration.testapp:app"], port=port)
    clients = []
    try:
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(40)]
        for i, c in enumerate(clients):
            assert c.call("calc", "add", {"a": i})["data"] == i
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_bad_handshakes_get_clear_http_answers(server):
    """Requests to /ws that are not a valid opening handshake: an HTTP error, nothing upgraded."""
    import requests

    if server.mode == "gunicorn-geventwebsocket":
        pytest.skip("gevent-websocket answers malformed upgrades itself, before the app runs")
    url = server.url + "/ws"
    good = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    assert requests.get(url, timeout=5).status_code == 400  # not an upgrade: Flask's routing says so
    old = requests.get(url, headers=dict(good, **{"Sec-WebSocket-Version": "8"}), timeout=5)
    assert old.status_code == 426 and old.headers["Sec-WebSocket-Version"] == "13"
    for bad_key in ("", "not base64!", base64.b64encode(b"short").decode()):
        r = requests.get(url, headers=dict(good, **{"Sec-WebSocket-Key": bad_key}), timeout=5)
        assert r.status_code == 400, bad_key
        assert "Sec-WebSocket-Key" in r.text
    assert requests.post(url, headers=good, timeout=5).status_code == 405

"""protocol.md §5: pings and dead peers, origin allowlist — under every server kind."""
import base64
import os
import socket
import struct
import time

import pytest
import websocket

from support.rawws import handshake
from support.servers import WORKER_CLASSES, ServerProcess
from support.waiting import wait_for
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


HIXIE_76 = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
            "Origin: http://127.0.0.1\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
            "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n^n:ds[4U")


def status_line(port: int, request: str) -> bytes:
    """The first line of the answer to ``request`` (raw bytes), then a reset."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        line = s.recv(4096).split(b"\r\n")[0]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    return line


# every server kind: under gunicorn-geventwebsocket too, where gevent-websocket
# answered malformed upgrades itself (a str body: a TypeError traceback each)
@pytest.mark.parametrize("server", list(WORKER_CLASSES), indirect=True)
def test_bad_handshakes_get_clear_http_answers(server):
    """Requests to /ws that are not a valid opening handshake: an HTTP error,
    nothing upgraded, no traceback in the log."""
    import requests

    url = server.url + "/ws"
    good = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    assert requests.get(url, timeout=5).status_code == 400  # not an upgrade: Flask's routing says so
    # hybi-07/08 (the framing of RFC 6455) are upgraded where gevent-websocket upgrades
    for version in ("8", "") if server.mode != "gunicorn-geventwebsocket" else ("",):
        old = requests.get(url, headers=dict(good, **{"Sec-WebSocket-Version": version}), timeout=5)
        assert old.status_code == 426 and old.headers["Sec-WebSocket-Version"] == "13", version
        assert old.text == "Unsupported Sec-WebSocket-Version (13 is)\n"
    for bad_key in ("", "not base64!", base64.b64encode(b"short").decode()):
        r = requests.get(url, headers=dict(good, **{"Sec-WebSocket-Key": bad_key}), timeout=5)
        assert r.status_code == 400, bad_key
        assert "Sec-WebSocket-Key" in r.text
    assert requests.post(url, headers=good, timeout=5).status_code == 405
    http10 = "".join(f"{k}: {v}\r\n" for k, v in good.items())
    assert b" 400 " in status_line(server.port, f"GET /ws HTTP/1.0\r\nHost: x\r\n{http10}\r\n")
    for path in ("/ws", "/sockjs/000/abcd/websocket"):  # hixie-76 (no Sec-WebSocket-Version), then garbage
        assert status_line(server.port, HIXIE_76.format(path=path)).startswith(b"HTTP/1.1 426"), path
    if server.mode != "gunicorn-gevent":  # pywsgi's parser: its 400 to a peer gone (BrokenPipe)
        for n in (1, 2):  # the second's line in the log comes after all of the first's output
            status_line(server.port, "\x01garbage\r\n\r\n")
            wait_for(lambda n=n: server.log().count("Invalid HTTP method") >= n, 10, "pywsgi's 400")
    assert "Traceback" not in server.log(), server.log()[-3000:]

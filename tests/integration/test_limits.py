"""Limits enforced on a real server: message rate, connections per process and per identity."""
import json

import pytest
import websocket

from snorky_sync.auth import ConnectionTokens
from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient

SECRET = "integration-token-secret-0123456789"


@pytest.fixture(scope="module", params=["embedded", "gunicorn-geventwebsocket"])
def limited(request):
    srv = ServerProcess(request.param, app="tests.integration.testapp:app", env={
        "SNORKY_RATE_LIMIT": "100", "SNORKY_RATE_BURST": "100",
        "SNORKY_MAX_CONNECTIONS": "20", "SNORKY_MAX_CONNECTIONS_PER_IDENTITY": "2"})
    yield srv
    srv.stop()


def status_of(srv, path):
    try:
        ws = websocket.create_connection(srv.ws_url + path, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    opcode, data = ws.recv_data(control_frame=True)
    ws.close()
    return int.from_bytes(data[:2], "big") if opcode == websocket.ABNF.OPCODE_CLOSE else opcode


def test_flooding_client_is_closed_with_1008_others_unaffected(limited):
    flood, calm = SnorkyTestClient(limited.ws_url + "/ws"), SnorkyTestClient(limited.ws_url + "/ws")
    frame = json.dumps({"service": "calc", "message": {"command": "add", "params": {"a": 1}}})
    try:
        for _ in range(1000):
            flood.ws.send(frame)
    except (BrokenPipeError, ConnectionResetError, websocket.WebSocketConnectionClosedException):
        pass
    flood.ws.settimeout(10)
    code = None
    try:
        while True:
            opcode, data = flood.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big")
                break
    except (ConnectionResetError, websocket.WebSocketConnectionClosedException):
        pass
    assert code == 1008
    assert calm.call("calc", "add", {"a": 2})["data"] == 2
    assert "more than 100.0 messages/s" in limited.log()
    calm.close()


def test_connections_per_identity(limited):
    token = ConnectionTokens(SECRET).create("carol")
    first = [SnorkyTestClient(f"{limited.ws_url}/ws-token?token={token}") for _ in range(2)]
    expected = 1008 if limited.mode == "gunicorn-geventwebsocket" else 429
    assert status_of(limited, f"/ws-token?token={token}") == expected
    other = SnorkyTestClient(f"{limited.ws_url}/ws-token?token={ConnectionTokens(SECRET).create('dave')}")
    assert other.ok("who", "whoami") == "dave"
    first[0].close()
    # the slot frees once the server has seen the disconnect
    assert first[1].ok("who", "whoami") == "carol"
    for c in first[1:] + [other]:
        c.close()


def test_connections_per_process(limited):
    clients = []
    try:
        while len(clients) < 40:
            try:
                c = SnorkyTestClient(limited.ws_url + "/ws")
            except websocket.WebSocketBadStatusException as exc:
                assert exc.status_code == 503
                break
            clients.append(c)
            try:
                c.call("calc", "add", {"a": 1})
            except (websocket.WebSocketConnectionClosedException, OSError):
                # gevent-websocket upgraded before we could refuse: closed with 1008
                assert limited.mode == "gunicorn-geventwebsocket"
                clients.pop()
                break
        assert len(clients) <= 20
        assert len(clients) >= 15  # up to the limit, minus other tests' lingering connections
    finally:
        for c in clients:
            c.close()


def test_service_limits_come_from_settings():
    srv = ServerProcess("embedded", app="wsgi:app", env={
        "SNORKY_MAX_SUBSCRIPTIONS": "3", "SNORKY_MAX_CHANNEL_SIZE": "10", "SNORKY_MAX_CURSORS": "2",
        "SNORKY_TOKEN_SECRET": SECRET})
    try:
        c = SnorkyTestClient(f"{srv.ws_url}/ws?token={ConnectionTokens(SECRET).create('u')}")
        for i in range(3):
            c.ok("pubsub", "subscribe", {"channel": i})
        assert c.call("pubsub", "subscribe", {"channel": 9})["message"] == "Too many subscriptions"
        assert c.call("pubsub", "subscribe", {"channel": "x" * 11})["message"] == "Channel too long"
        for i in range(3):
            c.ok("chat", "join", {"channel": i})
        assert c.call("chat", "join", {"channel": 9})["message"] == "Too many channels"
        c.ok("cursors", "join", {"document": "d"})
        for i in range(2):
            c.ok("cursors", "createCursor", {"privateHandle": i, "document": "d", "position": 0, "status": 0})
        assert c.call("cursors", "createCursor", {"privateHandle": 5, "document": "d", "position": 0, "status": 0})["message"] == "Too many cursors"
        c.close()
    finally:
        srv.stop()

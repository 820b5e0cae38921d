"""Every example in examples/ started as a user would, and exercised."""
import subprocess
import sys

import pytest
import requests

from support.servers import API_KEY, ROOT, ServerProcess, free_port
from support.wsclient import SnorkyTestClient


def Example(name, env=None):
    """Start ``examples/NAME`` as a user would (it reads PORT)."""
    return ServerProcess(args=[f"examples/{name}"], env=env)


def test_seed_pubsub_example():
    srv = Example("pubsub_server.py")
    try:
        a, b = SnorkyTestClient(srv.ws_url + "/ws"), SnorkyTestClient(srv.ws_url + "/ws")
        a.ok("messaging", "subscribe", {"channel": "c"})
        b.ok("messaging", "publish", {"channel": "c", "message": "hello"})
        assert a.recv() == {"service": "messaging", "message": {"type": "message", "channel": "c", "message": "hello"}}
        assert "Snorky running..." in srv.log()
    finally:
        srv.stop()


def test_echo_example():
    srv = Example("echo_service.py")
    try:
        c = SnorkyTestClient(srv.ws_url + "/ws")
        for msg in ("text", {"a": [1, None]}, 0):
            c.send("echo", msg)
            assert c.recv() == {"service": "echo", "message": msg}
    finally:
        srv.stop()


def test_calculator_example():
    srv = Example("calculator.py")
    try:
        c = SnorkyTestClient(srv.ws_url + "/ws")
        assert c.call("calc", "add", {"a": 2})["data"] == 2
        assert c.call("calc", "add", {"a": 2, "b": 3})["data"] == 5
        assert c.call("calc", "divide", {"a": 1, "b": 0}) == {"type": "error", "callId": 3, "message": "Division by zero"}
        c.send("calc", {"command": "slowSquare", "params": {"x": 7, "delay": 0.3}, "callId": "slow"})
        assert c.call("calc", "add", {"a": 1}, call_id="fast")["data"] == 1  # answered while slow runs
        assert c.recv()["message"] == {"type": "response", "callId": "slow", "data": 49}
    finally:
        srv.stop()


def test_private_backend_and_publisher_examples():
    backend_port = free_port()
    srv = Example("private_backend.py", env={"SNORKY_API_KEY": API_KEY, "BACKEND_PORT": str(backend_port)})
    try:
        c = SnorkyTestClient(srv.ws_url + "/ws")
        c.ok("news", "subscribe", {"channel": "headlines"})
        assert c.call("news", "publish", {"channel": "headlines", "message": "x"})["message"] == "Not authorized"
        # the backend is not on the public port
        assert requests.post(srv.url + "/backend", json={}, timeout=5).status_code == 404
        out = subprocess.run(
            [sys.executable, "examples/backend_publisher.py", "Breaking news"], cwd=ROOT, timeout=30,
            env={"SNORKY_API_KEY": API_KEY, "BACKEND_URL": f"http://127.0.0.1:{backend_port}/backend",
                 "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert c.recv() == {"service": "news", "message": {"type": "message", "channel": "headlines", "message": "Breaking news"}}
    finally:
        srv.stop()


def test_existing_flask_app_keeps_its_routes_and_session():
    srv = Example("existing_flask_app.py")
    try:
        s = requests.Session()
        assert "Visits: 1" in s.get(srv.url + "/", timeout=5).text
        assert "Visits: 2" in s.get(srv.url + "/", timeout=5).text  # the app's own session works
        js = requests.get(srv.url + "/snorky_sync/static/snorky.js", timeout=5)  # the client, served
        assert js.status_code == 200 and js.content == (ROOT / "snorky_sync/static/snorky.js").read_bytes()
        c = SnorkyTestClient(srv.ws_url + "/realtime")
        c.ok("pubsub", "subscribe", {"channel": "x"})
        c.ok("pubsub", "publish", {"channel": "x", "message": 1})
        assert c.notifications[0]["message"]["message"] == 1
    finally:
        srv.stop()


def test_auth_session_example():
    import websocket
    srv = Example("auth_session.py")
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as exc:
            SnorkyTestClient(srv.ws_url + "/ws")
        assert exc.value.status_code == 401
        s = requests.Session()
        assert s.get(srv.url + "/login/alice", timeout=5).ok
        cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
        assert SnorkyTestClient(srv.ws_url + "/ws", cookie=cookie).ok("who", "whoami") == "alice"
    finally:
        srv.stop()


def test_auth_token_example():
    import websocket
    srv = Example("auth_token.py", env={"SNORKY_TOKEN_SECRET": "a-long-shared-secret-123"})
    try:
        token = requests.get(srv.url + "/token/bob", timeout=5).text
        assert SnorkyTestClient(f"{srv.ws_url}/ws?token={token}").ok("who", "whoami") == "bob"
        for bad in ("", "?token=garbage"):
            with pytest.raises(websocket.WebSocketBadStatusException):
                SnorkyTestClient(srv.ws_url + "/ws" + bad)
    finally:
        srv.stop()

"""The backend HTTP endpoint (protocol.md §4), under every server kind."""
import json

import requests

from support.servers import API_KEY


def post(server, body, key=API_KEY, **kwargs):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Backend-Key"] = key
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + "/backend", data=data, headers=headers, timeout=10, **kwargs)


def rpc_body(service, command, params, call_id=1):
    return {"service": service, "message": {"command": command, "params": params, "callId": call_id}}


def test_publish_reaches_websocket_subscribers(server, connect):
    a = connect()
    a.ok("pubsub", "subscribe", {"channel": ["list", {"ch": 1}]})
    r = post(server, rpc_body("pubsub_backend", "publish", {"channel": ["list", {"ch": 1}], "message": {"m": "é"}}, 5))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"service": "pubsub_backend", "message": {"type": "response", "callId": 5, "data": None}}
    assert a.recv() == {"service": "pubsub", "message": {"type": "message", "channel": ["list", {"ch": 1}], "message": {"m": "é"}}}


def test_rpc_errors_come_back_with_200(server):
    r = post(server, rpc_body("calc", "divide", {"a": 1, "b": 0}, "x"))
    assert r.status_code == 200
    assert r.json() == {"service": "calc", "message": {"type": "error", "callId": "x", "message": "Division by zero"}}
    r = post(server, rpc_body("calc", "nope", {}))
    assert r.json()["message"]["message"] == "Unknown command"
    r = post(server, {"service": "calc", "message": {"command": "add", "params": {"a": 1}}})
    assert r.json() == {"service": "calc", "message": {"type": "response", "data": 1}}


def test_asynchronous_commands_answer_over_http(server):
    r = post(server, rpc_body("calc", "slowSquare", {"x": 5, "delay": 0.2}))
    assert r.status_code == 200 and r.json()["message"]["data"] == 25


def test_only_post(server):
    for method in ("GET", "PUT", "DELETE"):
        r = requests.request(method, server.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10)
        assert r.status_code == 405, method


def test_key_is_checked_first(server):
    for key in (None, "", "wrong", API_KEY + "x", API_KEY[:-1]):
        for body in (rpc_body("calc", "add", {"a": 1}), b"{not json", b"\xff\xfe"):
            r = post(server, body, key=key)
            assert r.status_code == 401, (key, body)
            assert "error" in r.json()
    assert API_KEY not in server.log()


def test_bad_bodies(server):
    assert post(server, b"{not json").status_code == 400
    assert post(server, b'{"service": "calc", "message": "\xff"}').status_code == 400
    assert post(server, b"").status_code == 400
    for body in ([1, 2], "text", {"service": "calc"}, {"message": {}}):
        r = post(server, body)
        assert r.status_code == 400, body
        assert "error" in r.json()
    r = post(server, {"service": "calc", "message": {"command": "add"}})
    assert r.status_code == 400


def test_unknown_service_is_404(server):
    for name in ("nope", "pubsub", "CALC"):  # "pubsub" is frontend-only
        r = post(server, rpc_body(name, "publish", {}))
        assert r.status_code == 404, name
        assert "Unknown service" in r.json()["error"]


def test_body_size_limit(server):
    r = post(server, rpc_body("calc", "add", {"a": "x" * (70 * 1024)}))
    assert r.status_code == 413
    assert post(server, rpc_body("calc", "add", {"a": 1})).status_code == 200

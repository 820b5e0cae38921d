"""Deeply nested messages: a clear answer, no recursion, no log flood.

Issue #21 item 11: Snorky 0.1's hashable conversion (done for user services)
recursed on the client's data, so ~600 levels raised RecursionError, logged
~92 KB of traceback per message (unthrottled) and ended the connection.
Here one connection sends 300 deeply nested calls to the test app's
calculator (a user RPCService: hashable params), deep publishes to the
built-in PubSub, deep messages to a plain user Service (echo) and documents
deeper than the JSON parser takes, under every serving mode.  Every call is
answered ``Invalid params`` (protocol.md §2), the connection stays open, and
the server's log grows by a few KB at most.
"""
from __future__ import annotations

import json

import pytest

from support.servers import WORKER_CLASSES, serving
from support.wsclient import SnorkyTestClient

N = 300  # each is several KB: the per-connection byte budget (256 KB/s) paces them
DEPTHS = [129, 600, 1000]  # just over the limit; where 0.1's conversion broke; just under orjson's 1024
LOG_GROWTH = 8 * 1024


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    yield from serving(request, request.param, "tests.integration.testapp:app")


def nested(depth: int) -> str:
    """JSON text nesting lists and objects ``depth`` levels deep (the stdlib's
    encoder would itself recurse too deep to write it)."""
    opening = "".join('[' if i % 2 else '{"k": ' for i in range(depth))
    closing = "".join(']' if i % 2 else '}' for i in reversed(range(depth)))
    return opening + "1" + closing


def call(service: str, command: str, params: str, call_id: int) -> str:
    return (f'{{"service": "{service}", "message": {{"command": "{command}", "params": {params}, '
            f'"callId": {call_id}}}}}')


def log_size(srv) -> int:
    srv.log()  # flushes
    return srv.log_path.stat().st_size


def collect(c: SnorkyTestClient, call_ids: set) -> dict:
    got = {}
    while len(got) < len(call_ids):
        msg = c.recv(timeout=30)["message"]
        assert msg["callId"] in call_ids, msg
        got[msg["callId"]] = msg
    return got


def test_deep_params_to_a_user_service_get_invalid_params(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws")
    before = log_size(server)
    for i in range(N):
        c.send_raw(call("calc", "add", f'{{"a": {nested(DEPTHS[i % len(DEPTHS)])}, "b": 1}}', i))
    answers = collect(c, set(range(N)))
    assert all(m == {"type": "error", "callId": i, "message": "Invalid params"} for i, m in answers.items())
    assert c.call("calc", "add", {"a": 1, "b": 1}) == {"type": "response", "callId": 1, "data": 2}
    grown = log_size(server) - before
    assert grown < LOG_GROWTH, server.log()[-3000:]
    assert "RecursionError" not in server.log() and "Traceback" not in server.log()
    c.close()


def test_deep_messages_to_builtin_and_plain_services(server):
    c = SnorkyTestClient(f"{server.ws_url}/ws")
    before = log_size(server)
    for i in range(300):
        depth = DEPTHS[i % len(DEPTHS)]
        c.send_raw(call("pubsub", "publish", f'{{"channel": "c", "message": {nested(depth)}}}', i))
        c.send_raw(f'{{"service": "echo", "message": {nested(depth)}}}')  # a plain Service: logged, dropped
        c.send_raw("[" * 2000 + "]" * 2000)                 # deeper than the parser takes: invalid JSON
    answers = collect(c, set(range(300)))
    assert all(m == {"type": "error", "callId": i, "message": "Invalid params"} for i, m in answers.items())
    c.send_raw(f'{{"service": "echo", "message": {nested(100)}}}')  # within the limit: echoed
    assert json.dumps(c.recv()["message"]).replace(" ", "") == nested(100).replace(" ", "")
    grown = log_size(server) - before
    assert grown < LOG_GROWTH, server.log()[-3000:]
    assert "RecursionError" not in server.log() and "Traceback" not in server.log()
    c.close()

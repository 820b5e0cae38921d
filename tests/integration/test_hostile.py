"""Hostile input over a real connection (hypothesis): arbitrary frames, envelopes
and params for every command of every service, on the WebSocket and on the
backend HTTP endpoint.  The server must answer per docs/protocol.md, never with
"Internal error" (a command that raised: a bug, whatever the input) and never
with a traceback, never drop a connection for a well-formed frame, and leave no
state behind."""
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.servers import API_KEY, ServerProcess
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

COMMANDS = {
    "pubsub": ["subscribe", "unsubscribe", "publish"],
    "calc": ["add", "divide", "slowSquare"],
    "who": ["whoami"],
    "chat": ["join", "leave", "send", "read"],
    "cursors": ["join", "leave", "createCursor", "updateCursor", "removeCursor"],
    "messaging": ["registerParticipant", "unregisterParticipant", "listParticipants", "send"],
    "datasync": ["acquireSubscription", "cancelSubscription"],
}
BACKEND_COMMANDS = {
    "pubsub_backend": ["publish"],
    "datasync_backend": ["authorizeSubscription", "publishDeltas"],
    "calc": ["add", "divide", "slowSquare"],
}
KNOWN_ERRORS = {"Unknown command", "Invalid params", "Already subscribed",
                "x must be a number",
                "Not subscribed", "Not authorized", "Division by zero", "Too many subscriptions",
                "Channel too long", "Not authenticated", "Already joined", "Not joined",
                "Reused handle", "Too many cursors", "No such cursor", "Document too long",
                "Name already registered", "Name not allowed", "Unknown participant",
                "Invalid participant", "Invalid sender", "Unknown destination",
                "token must be string", "No such subscription", "Too many channels",
                "Too many documents", "Too many names"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
param_names = st.sampled_from(["channel", "message", "a", "b", "x", "delay", "identity", "params", "",
                                "document", "body", "privateHandle", "position", "status", "newData",
                                "name", "sender", "dest", "token"])
params = st.one_of(json_values, st.dictionaries(param_names, json_values, max_size=4))
call_ids = st.one_of(st.none(), st.integers(0, 10**6), st.text(max_size=5), st.just({"k": [1]}))


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess("embedded", app="tests.integration.testapp:app", env={"SNORKY_RATE_LIMIT": "0"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def conn(srv):
    """An authenticated connection, so Chat and Cursors get past their identity check."""
    from snorky_sync.auth import ConnectionTokens
    token = ConnectionTokens("integration-token-secret-0123456789").create({"user": "fuzz"})
    c = SnorkyTestClient(f"{srv.ws_url}/ws-token?token={token}", timeout=10)
    yield c
    c.close()


def user_code_raises(service, command, params) -> bool:
    """calc is examples/calculator.py, a user's service that does arithmetic on
    whatever it is given: add/divide with a non-number raises a TypeError in the
    user's code, which the server answers "Internal error" (test_protocol.py
    checks that path).  Nothing else may answer "Internal error"."""
    if service != "calc" or command not in ("add", "divide") or not isinstance(params, dict):
        return False
    return any(not isinstance(params.get(k, 0), (int, float)) for k in ("a", "b"))


def assert_no_internal_error(answer, srv, service=None, command=None, params=None):
    text = json.dumps(answer)
    assert "Traceback" not in text, answer
    if answer.get("message") == "Internal error" and user_code_raises(service, command, params):
        return
    assert "Internal error" not in text, (
        f"{service}.{command}({params!r}) -> {answer}\n--- server log ---\n{srv.log()[-3000:]}")


def check_alive(c):
    assert c.call("calc", "add", {"a": 1}, call_id="alive")["data"] == 1


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(service=st.sampled_from(sorted(COMMANDS)), data=st.data(), params=params, call_id=call_ids)
def test_arbitrary_params_for_every_command(srv, conn, service, data, params, call_id):
    command = data.draw(st.sampled_from(COMMANDS[service] + ["nope", "__init__", "process_message_from"]))
    if service == "calc" and command == "slowSquare" and isinstance(params, dict):
        params = {**params, "delay": 0}  # keep it quick; the value is still arbitrary elsewhere
    cid = "probe" if call_id is None else call_id
    conn.send(service, {"command": command, "params": params, "callId": cid})
    answer = None
    while answer is None:
        env = conn.recv()
        msg = env["message"]
        if isinstance(msg, dict) and msg.get("type") in ("response", "error") and msg.get("callId") == cid:
            answer = msg
    assert_no_internal_error(answer, srv, service, command, params)
    if answer["type"] == "error" and answer["message"] != "Internal error":
        assert answer["message"] in KNOWN_ERRORS, answer
    conn.notifications.clear()
    if answer["type"] == "response":  # undo state changes so later examples start clean
        undo = {("pubsub", "subscribe"): ("unsubscribe", "channel"), ("chat", "join"): ("leave", "channel"),
                ("cursors", "join"): ("leave", "document"),
                ("messaging", "registerParticipant"): ("unregisterParticipant", "name")}.get((service, command))
        if undo:
            conn.ok(service, undo[0], {undo[1]: params[undo[1]]})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=st.one_of(
    st.text(max_size=50),
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["service", "message", "x"]), json_values, max_size=3).map(json.dumps),
    st.builds(lambda s, m: json.dumps({"service": s, "message": m}),
              st.sampled_from(["pubsub", "calc", "who", "echo", "nope", "PUBSUB"]), json_values),
))
def test_arbitrary_frames_never_close_the_connection(conn, frame):
    conn.send_raw(frame)
    check_alive(conn)  # answered in order: the frame above was processed first
    conn.notifications.clear()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["sub", "unsub", "drop"]),
                              st.sampled_from(["a", "b", {"c": 1}, [1]])), max_size=15))
def test_random_subscribe_unsubscribe_disconnect_leaves_nothing(srv, conn, ops):
    base = conn.ok("inspect", "state")
    clients = {}
    for who, op, channel in ops:
        if op == "drop":
            c = clients.pop(who, None)
            if c:
                c.close()
            continue
        c = clients.get(who) or clients.setdefault(who, SnorkyTestClient(srv.ws_url + "/ws"))
        c.call("pubsub", "subscribe" if op == "sub" else "unsubscribe", {"channel": channel})
    for c in clients.values():
        c.close()
    def cleaned():  # visible only by asking the server
        state = conn.ok("inspect", "state")
        return (state["subscribers"], state["subscriptions"]) == (base["subscribers"], base["subscriptions"])
    wait_for(cleaned, 10, "every dropped client's subscriptions cleaned up", interval=0.02)


def post_backend(srv, body: bytes):
    return requests.post(srv.url + "/backend", data=body, timeout=30,
                         headers={"X-Backend-Key": API_KEY, "Content-Type": "application/json"})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(service=st.sampled_from(sorted(BACKEND_COMMANDS)), data=st.data(), params=params, call_id=call_ids)
def test_backend_arbitrary_params_for_every_command(srv, service, data, params, call_id):
    """The backend registry (POST /backend, trusted callers, but a bug there is a
    bug): an answer for every call, an RPC error at worst, never "Internal error"."""
    command = data.draw(st.sampled_from(BACKEND_COMMANDS[service] + ["nope", "__init__", "process_message_from"]))
    if service == "calc" and command == "slowSquare" and isinstance(params, dict):
        params = {**params, "delay": 0}
    message = {"command": command, "params": params}
    if call_id is not None:
        message["callId"] = call_id
    r = post_backend(srv, json.dumps({"service": service, "message": message}).encode())
    assert r.status_code == 200, (r.status_code, r.text, srv.log()[-3000:])
    answer = r.json()["message"]
    assert answer["type"] in ("response", "error"), answer
    assert_no_internal_error(answer, srv, service, command, params)
    if answer["type"] == "error":
        assert isinstance(answer["message"], str) and answer["message"], answer


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    st.binary(max_size=60),
    st.text(max_size=50).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["service", "message", "x"]), json_values, max_size=3)
    .map(lambda v: json.dumps(v).encode()),
    st.builds(lambda s, m: json.dumps({"service": s, "message": m}).encode(),
              st.sampled_from(sorted(BACKEND_COMMANDS) + ["pubsub", "nope"]), json_values),
))
def test_backend_arbitrary_bodies_get_a_clear_answer(srv, body):
    """Any body: 200 with an envelope, or a 4xx with {"error": ...}; never a 5xx."""
    r = post_backend(srv, body)
    assert r.status_code in (200, 400, 404), (r.status_code, r.text, srv.log()[-3000:])
    answer = r.json()
    if r.status_code == 200:
        assert answer["message"]["type"] in ("response", "error"), answer
        sent = json.loads(body)["message"]
        assert_no_internal_error(answer, srv, json.loads(body)["service"], sent.get("command"), sent.get("params"))
    else:
        assert isinstance(answer["error"], str), answer


def test_flood_of_garbage_does_not_starve_others(srv):
    flooder = SnorkyTestClient(srv.ws_url + "/ws")
    subs = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(5)]
    for s in subs:
        s.ok("pubsub", "subscribe", {"channel": "flood"})
    pub = SnorkyTestClient(srv.ws_url + "/ws")
    garbage = ["{", "[]", '{"service": "nope", "message": 1}', "\x00" * 100]
    for i in range(3000):
        flooder.send_raw(garbage[i % 4])
        if i % 100 == 0:
            pub.send("pubsub", {"command": "publish", "params": {"channel": "flood", "message": i}})
    for s in subs:
        assert [s.recv()["message"]["message"] for _ in range(30)] == list(range(0, 3000, 100))
    check_alive(flooder)
    for c in subs + [pub, flooder]:
        c.close()

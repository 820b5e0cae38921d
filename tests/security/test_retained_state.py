"""What an idle connection can make the server keep is bounded (issue #21 item 4).

One parked connection held ~820 MB through three cursors whose position was
a 10 MiB JSON document (kept parsed: ~28 bytes of Python per byte of
``[[],[],...]``), and Chat/Cursors kept the parsed forms of long names.  Here,
against the default app under every serving mode:

* cursor fields over SNORKY_MAX_CURSOR_SIZE are refused (``Cursor too
  large``), on create and on update, and nothing of them is kept;
* names over SNORKY_MAX_CHANNEL_SIZE are refused before anything is kept,
  measured in bytes (a string of 4-byte characters under the limit in
  characters but over it in bytes was accepted);
* 200 connections each parking 16 cursors at the size limit grow the
  server's RSS by less than twice the bound docs/security.md states for
  them; 20 connections with every per-connection limit at its maximum
  (subscriptions, channels, documents, cursors, names, DataSync
  subscriptions), by less than twice the stated worst case.
"""
from __future__ import annotations

import itertools
import json
import os
import resource
import time

import pytest
import requests

from snorky_sync.auth import ConnectionTokens
from support.servers import API_KEY, WORKER_CLASSES, ServerProcess, metric
from support.waiting import wait_connections
from support.wsclient import SnorkyTestClient

SECRET = "retained-state-secret-0123456789"
SERVER_ENV = {"SNORKY_TOKEN_SECRET": SECRET,
              "SNORKY_DATASYNC_DEALERS": "snorky_sync.demos.todos:AllTodos",
              # messages larger than the chat limit must reach the service
              "SNORKY_MAX_FRAME_SIZE": str(256 * 1024)}
TOKENS = ConnectionTokens(SECRET)
_ids = itertools.count()

# the defaults (docs/security.md)
MAX_SUBSCRIPTIONS, MAX_CHANNEL, MAX_CURSORS, MAX_CURSOR = 200, 1024, 16, 4096
MAX_NAMES, MAX_NAME_CHARS = 100, 256

# docs/security.md, "Memory, whatever the clients do": per connection, in KB
BOUND_CURSORS_KB = 160      # an idle connection with 16 cursors at the size limit
BOUND_EVERYTHING_KB = 1600  # every per-connection limit at its maximum


def nested(size: int, tag: int = 0) -> list:
    """A list whose compact JSON is at most ``size`` bytes and whose parsed
    form is as large as JSON gets (one empty list per 3 bytes)."""
    head = len(json.dumps([tag], separators=(",", ":")))
    return [tag] + [[] for _ in range(max(0, (size - head) // 3))]


def jsize(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def connect(srv) -> SnorkyTestClient:
    return SnorkyTestClient(f"{srv.ws_url}/ws?token={TOKENS.create(f'user{next(_ids)}')}",
                            timeout=60)


def pipeline(c: SnorkyTestClient, calls: list[tuple[str, str, dict]]) -> list[dict]:
    """Send every call, then collect the answers (in call order)."""
    first = next(_ids) * 100_000
    for n, (service, command, params) in enumerate(calls):
        c.send(service, {"command": command, "params": params, "callId": first + n})
    answers: dict[int, dict] = {}
    while len(answers) < len(calls):
        msg = c.recv()["message"]
        if isinstance(msg, dict) and msg.get("type") in ("response", "error"):
            answers[msg["callId"] - first] = msg
    return [answers[n] for n in range(len(calls))]


def ok(answers: list[dict]) -> None:
    bad = [a for a in answers if a["type"] != "response"]
    assert not bad, bad[:3]


def worker_pid(srv) -> int:
    """The process serving the connections (gunicorn's one worker)."""
    if srv.mode == "embedded":
        return srv.proc.pid
    kids = []
    for tid in os.listdir(f"/proc/{srv.proc.pid}/task"):
        with open(f"/proc/{srv.proc.pid}/task/{tid}/children") as f:
            kids += [int(p) for p in f.read().split()]
    assert len(kids) == 1, kids
    return kids[0]


def wait_no_connections(srv, timeout: float = 30.0) -> None:
    wait_connections(srv, 0, timeout)


def wait_parked(srv, timeout: float = 10.0) -> int:
    """Wait until no connection has a reading greenlet (they are parked, as an
    idle connection is); returns how many still had one at the deadline (the
    gevent-websocket worker keeps a greenlet per connection)."""
    deadline = time.monotonic() + timeout
    reading = metric(srv, "snorky_websockets_reading")
    while reading and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the gauge: parking is only visible there
        reading = metric(srv, "snorky_websockets_reading")
    return int(reading)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(params=list(WORKER_CLASSES))
def fresh_server(request):
    """A default app of its own: memory freed by other tests would be reused
    and hide what these connections cost."""
    srv = ServerProcess(request.param, app="wsgi:app", env=SERVER_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module", autouse=True)
def _descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- refusals -------------------------------------------------------------------------

def cursor_fields(total: int) -> tuple[list, list]:
    """A position and a status whose JSON, with the private handle ``1``, is ``total`` bytes at most."""
    half = (total - 1) // 2
    return nested(half, 1), nested(total - 1 - half, 2)


def test_oversized_cursor_fields_are_refused(default_server):
    c, other = connect(default_server), connect(default_server)
    try:
        c.ok("cursors", "join", {"document": "d"})
        other.ok("cursors", "join", {"document": "d"})
        pos, status = cursor_fields(MAX_CURSOR)
        assert jsize(pos) + jsize(status) + 1 <= MAX_CURSOR
        too_big = nested(MAX_CURSOR + 1)
        for params in ({"position": too_big, "status": None}, {"position": 0, "status": too_big},
                       {"position": nested(MAX_CURSOR // 2 + 8), "status": nested(MAX_CURSOR // 2 + 8)},
                       {"position": "x" * MAX_CURSOR, "status": None}):
            answer = c.call("cursors", "createCursor", {"privateHandle": 1, "document": "d", **params})
            assert answer == {"type": "error", "callId": answer["callId"], "message": "Cursor too large"}
        big_handle = c.call("cursors", "createCursor", {"privateHandle": "h" * MAX_CURSOR,
                                                       "document": "d", "position": 0, "status": 0})
        assert big_handle["message"] == "Cursor too large"
        c.ok("cursors", "createCursor", {"privateHandle": 1, "document": "d", "position": pos,
                                         "status": status})
        other.wait_for(lambda m: m.get("type") == "cursorAdded")
        answer = c.call("cursors", "updateCursor", {"privateHandle": 1, "newData": {"status": too_big}})
        assert answer["message"] == "Cursor too large"
        # growing one field past what the other leaves is refused too
        answer = c.call("cursors", "updateCursor",
                        {"privateHandle": 1, "newData": {"position": nested(MAX_CURSOR - jsize(status) + 3)}})
        assert answer["message"] == "Cursor too large"
        c.ok("cursors", "updateCursor", {"privateHandle": 1, "newData": {"position": 7}})
        updated = other.wait_for(lambda m: m.get("type") == "cursorUpdated")["cursor"]
        assert updated["position"] == 7 and updated["status"] == status  # the refusals changed nothing
        late = connect(default_server)
        (cursor,) = late.ok("cursors", "join", {"document": "d"})["cursors"]
        assert cursor["position"] == 7 and cursor["status"] == status
        late.close()
    finally:
        c.close()
        other.close()


@pytest.mark.parametrize("service,command,param,error", [
    ("pubsub", "subscribe", "channel", "Channel too long"),
    ("chat", "join", "channel", "Channel too long"),
    ("cursors", "join", "document", "Document too long"),
])
def test_long_names_are_refused_in_bytes(default_server, service, command, param, error):
    c = connect(default_server)
    try:
        for name in ("x" * (MAX_CHANNEL + 1),                # over in characters
                     "\U0001F600" * (MAX_CHANNEL // 4 + 1),  # under in characters, over in bytes
                     "é" * (MAX_CHANNEL // 2 + 1),
                     nested(MAX_CHANNEL + 3)):                # a long list
            answer = c.call(service, command, {param: name})
            assert answer["type"] == "error" and answer["message"] == error, (name[:3], answer)
        for name in ("x" * MAX_CHANNEL, "\U0001F600" * (MAX_CHANNEL // 4), nested(MAX_CHANNEL)):
            assert c.call(service, command, {param: name})["type"] == "response"
    finally:
        c.close()


def test_an_oversized_chat_message_is_refused(default_server):
    c = connect(default_server)
    try:
        c.ok("chat", "join", {"channel": "room"})
        answer = c.call("chat", "send", {"channel": "room", "body": "x" * (64 * 1024)})
        assert answer["message"] == "Message too large"
        c.ok("chat", "send", {"channel": "room", "body": "x" * (64 * 1024 - 2)})
    finally:
        c.close()


# -- what parked connections cost -----------------------------------------------------

def park_cursors(c: SnorkyTestClient, n: int) -> None:
    doc = f"doc-{n}"  # one document each: no notifications between them
    pos, status = cursor_fields(MAX_CURSOR)
    ok(pipeline(c, [("cursors", "join", {"document": doc})] + [
        ("cursors", "createCursor", {"privateHandle": h, "document": doc, "position": pos,
                                     "status": status}) for h in range(MAX_CURSORS)]))


def grown_per_connection(srv, count: int, park, warmup: int) -> float:
    """KB of server RSS per connection for ``count`` connections set up by
    ``park`` (after ``warmup`` of them were set up and closed: the first one
    pays for code paths run once)."""
    pid = worker_pid(srv)
    warm = [connect(srv) for _ in range(warmup)]
    for n, c in enumerate(warm):
        park(c, n)
    for c in warm:
        c.close()
    wait_no_connections(srv)  # their state is dropped: the memory is the allocator's again
    before = rss_kb(pid)
    clients = [connect(srv) for _ in range(count)]
    try:
        for n, c in enumerate(clients):
            park(c, 10_000 + n)
        reading = wait_parked(srv)
        after = rss_kb(pid)
    finally:
        for c in clients:
            c.close()
    per = (after - before) / count
    print(f"{srv.mode}: RSS {before} -> {after} KB, {per:.1f} KB per connection "
          f"({reading} connections not parked)")
    return per


def test_parked_cursors_at_the_size_limit_cost_what_the_docs_say(fresh_server):
    per = grown_per_connection(fresh_server, 200, park_cursors, warmup=1)
    assert per < 2 * BOUND_CURSORS_KB


def park_everything(srv, session: requests.Session):
    """Every per-connection limit at its maximum (the defaults)."""
    def park(c: SnorkyTestClient, n: int) -> None:
        calls = []
        for i in range(MAX_SUBSCRIPTIONS):
            calls.append(("pubsub", "subscribe", {"channel": nested(MAX_CHANNEL, n * 1000 + i)}))
            calls.append(("chat", "join", {"channel": nested(MAX_CHANNEL, n * 1000 + i)}))
            calls.append(("cursors", "join", {"document": nested(MAX_CHANNEL, n * 1000 + i)}))
        first_doc = nested(MAX_CHANNEL, n * 1000)
        pos, status = cursor_fields(MAX_CURSOR)
        calls += [("cursors", "createCursor", {"privateHandle": h, "document": first_doc,
                                               "position": pos, "status": status})
                  for h in range(MAX_CURSORS)]
        calls += [("messaging", "registerParticipant",
                   {"name": f"{n:05d}{i:03d}" + "\U0001F600" * (MAX_NAME_CHARS - 8)})
                  for i in range(MAX_NAMES)]
        for _ in range(MAX_SUBSCRIPTIONS):
            reply = session.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, json={
                "service": "datasync_backend", "message": {
                    "command": "authorizeSubscription", "callId": 1,
                    "params": {"items": [{"dealer": "demoTodos", "query": None}]}}}, timeout=30)
            calls.append(("datasync", "acquireSubscription", {"token": reply.json()["message"]["data"]}))
        ok(pipeline(c, calls))
    return park


@pytest.mark.parametrize("fresh_server", ["embedded"], indirect=True)
def test_a_connection_at_every_limit_costs_at_most_the_stated_worst_case(fresh_server):
    # what a connection retains is the services' (the same code under every
    # serving mode, measured per mode by the cursor test above).  12 connections
    # (~17 MB together: ~1.4 MB each, far above the allocator's noise), ~20 s a run
    with requests.Session() as session:
        per = grown_per_connection(fresh_server, 12, park_everything(fresh_server, session),
                                   warmup=1)
    assert per < 2 * BOUND_EVERYTHING_KB

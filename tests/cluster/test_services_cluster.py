"""Chat, Messaging and Cursors across processes through a real Redis.

A client must not be able to tell one process from many.  State announced by
one process reaches the others asynchronously, so where a test depends on a
process having heard of another's change it waits for an event that proves
it (a notification, or an answer polled until it shows), never for a time.
"""
import signal
import time

from snorky_sync.auth import ConnectionTokens
from support.waiting import wait_for

from .conftest import RedisServer, wait_broker

SECRET = "cluster-token-secret-0123456789"
ENV = {"SNORKY_TOKEN_SECRET": SECRET, "SNORKY_CLUSTER_HEARTBEAT": "0.2", "SNORKY_CLUSTER_EXPIRY": "1.5"}
WAIT = 20.0  # upper bound on any wait for an event


def user(connect, srv, identity):
    return connect(srv, "/ws?token=" + ConnectionTokens(SECRET).create(identity))


def no_ts(msg):
    return {k: v for k, v in msg.items() if k != "timestamp"}


def until(client, pred, timeout=WAIT):
    """Notifications until one satisfies ``pred``; returns (it, the ones before)."""
    skipped = []
    deadline = time.monotonic() + timeout
    while True:
        msg = client.next_notification(max(0.01, deadline - time.monotonic()))["message"]
        if pred(msg):
            return msg, skipped
        skipped.append(msg)


def until_all(client, *preds, timeout=WAIT):
    """Notifications until each of ``preds`` was satisfied by one (any order)."""
    left = list(preds)
    while left:
        msg, _ = until(client, lambda m: any(p(m) for p in left), timeout)
        left = [p for p in left if not p(msg)]


def answers(client, n):
    """The next ``n`` answers (responses/errors) to ``client``, keeping notifications aside."""
    out = []
    while len(out) < n:
        env = client.recv(WAIT)
        if env["message"].get("type") in ("response", "error"):
            out.append(env["message"])
        else:
            client.notifications.append(env)
    return out


def eventually(fn, timeout=WAIT):
    """Call ``fn`` until it returns a true value (the state is only visible by asking)."""
    return wait_for(fn, timeout, interval=0.02)


def presence(who, status):
    return lambda m: m.get("type") == "presence" and m["from"] == who and m["status"] == status


def all_members(client, answer, expected):
    """A join answer's members plus the ``joined`` presences that follow it,
    until ``expected`` are all known (another process's earlier joins may still
    be on their way: then the joiner hears of them as presence)."""
    seen = list(answer["members"])
    while not set(expected) <= set(seen):
        msg, _ = until(client, lambda m: m.get("type") == "presence" and m["status"] == "joined")
        seen.append(msg["from"])
    assert sorted(seen) == sorted(set(seen)), f"an identity was announced twice: {seen}"
    return set(seen)


# -- Chat ------------------------------------------------------------------------


def test_chat_presence_members_messages_and_receipts_span_processes(cluster, connect):
    a, b = cluster(2, **ENV)
    alice, carol = user(connect, a, "alice"), user(connect, a, "carol")
    bob = user(connect, b, "bob")
    assert alice.ok("chat", "join", {"channel": "room"}) == {"members": ["alice"]}
    carol.ok("chat", "join", {"channel": "room"})
    until(alice, presence("carol", "joined"))
    assert all_members(bob, bob.ok("chat", "join", {"channel": "room"}), {"alice", "carol", "bob"}) == {
        "alice", "carol", "bob"}
    for c in (alice, carol):
        msg, skipped = until(c, presence("bob", "joined"))
        assert skipped == [] and no_ts(msg) == {"type": "presence", "from": "bob", "channel": "room",
                                                "status": "joined"}
    # alice's second connection, on the other process: she is already present, nobody hears of it
    alice2 = user(connect, b, "alice")
    assert sorted(alice2.ok("chat", "join", {"channel": "room"})["members"]) == ["alice", "bob", "carol"]
    # a message from B reaches everybody on both processes with one timestamp
    alice2.send("chat", {"command": "send", "params": {"channel": "room", "body": "hi"}, "callId": 5})
    assert alice2.recv()["message"]["type"] == "message"
    assert alice2.recv()["message"] == {"type": "response", "callId": 5, "data": None}
    got = [c.next_notification(WAIT)["message"] for c in (alice, carol, bob)]
    assert all(no_ts(m) == {"type": "message", "from": "alice", "channel": "room", "body": "hi"} for m in got)
    assert len({m["timestamp"] for m in got}) == 1
    # and from A
    carol.ok("chat", "send", {"channel": "room", "body": "yo"})
    for c in (alice, alice2, bob, carol):
        assert no_ts(c.next_notification(WAIT)["message"])["body"] == "yo"
    # read receipts reach the identity's other connection on the other process only
    alice.ok("chat", "read", {"channel": "room"})
    assert no_ts(alice2.next_notification(WAIT)["message"]) == {"type": "read", "channel": "room"}
    # alice leaves on A: still present through B, nobody hears of it
    alice.ok("chat", "leave", {"channel": "room"})
    for c in (carol, bob, alice2):
        c.expect_silence(0.3)
    # her last connection leaves: everybody hears `left` once
    alice2.ok("chat", "leave", {"channel": "room"})
    for c in (carol, bob):
        msg, skipped = until(c, presence("alice", "left"))
        assert skipped == []
        c.expect_silence(0.3)


def test_same_identity_joining_on_two_processes_at_once_is_announced_once(cluster, connect):
    a, b = cluster(2, **ENV)
    watchers = [user(connect, a, "w1"), user(connect, b, "w2")]
    joined = [w.ok("chat", "join", {"channel": "c"}) for w in watchers]
    for w, answer, other in zip(watchers, joined, ("w2", "w1")):
        all_members(w, answer, {other})
    dana_a, dana_b = user(connect, a, "dana"), user(connect, b, "dana")
    for d in (dana_a, dana_b):  # both joins in flight together
        d.send("chat", {"command": "join", "params": {"channel": "c"}, "callId": 1})
    for d in (dana_a, dana_b):
        assert answers(d, 1)[0]["type"] == "response"
    for w in watchers:
        until(w, presence("dana", "joined"))
    for w in watchers:
        w.expect_silence(0.5)
    for d in (dana_a, dana_b):
        d.send("chat", {"command": "leave", "params": {"channel": "c"}, "callId": 2})
    for w in watchers:
        until(w, presence("dana", "left"))
    for w in watchers:
        w.expect_silence(0.5)


def test_a_killed_process_takes_its_presence_names_and_cursors_with_it(cluster, connect):
    a, b = cluster(2, **ENV)
    bob = user(connect, a, "bob")
    bob.ok("chat", "join", {"channel": "room"})
    bob.ok("cursors", "join", {"document": "d"})
    dave = user(connect, b, "dave")
    dave.ok("chat", "join", {"channel": "room"})
    dave.ok("messaging", "registerParticipant", {"name": "dave"})
    dave.ok("cursors", "join", {"document": "d"})
    handle = dave.ok("cursors", "createCursor", {"privateHandle": 1, "document": "d", "position": 0, "status": "s"})
    until(bob, presence("dave", "joined"))
    until(bob, lambda m: m.get("type") == "cursorAdded" and m["cursor"]["publicHandle"] == handle)
    assert bob.ok("messaging", "listParticipants") == ["dave"]  # answered on B before: known on A
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    # within SNORKY_CLUSTER_EXPIRY (+ one heartbeat) A drops everything B had
    msg, _ = until(bob, presence("dave", "left"))
    assert no_ts(msg) == {"type": "presence", "from": "dave", "channel": "room", "status": "left"}
    until(bob, lambda m: m == {"type": "cursorRemoved", "cursor": {"publicHandle": handle, "document": "d"}})
    eventually(lambda: bob.ok("messaging", "listParticipants") == [])
    # the dead process's name can be taken again
    eventually(lambda: bob.call("messaging", "registerParticipant", {"name": "dave"})["type"] == "response")
    assert bob.ok("messaging", "listParticipants") == ["dave"]


# -- Messaging ---------------------------------------------------------------------


def test_participant_names_are_unique_across_processes_even_when_racing(cluster, connect):
    a, b = cluster(2, **ENV)
    ca, cb = connect(a), connect(b)
    ca.ok("messaging", "registerParticipant", {"name": "ann"})
    answer = cb.call("messaging", "registerParticipant", {"name": "ann"})
    assert answer["type"] == "error" and answer["message"] == "Name already registered"
    cb.ok("messaging", "registerParticipant", {"name": "bea"})
    names = [f"n{i}" for i in range(60)]
    # both processes are asked for every name at once, in opposite orders, so
    # they race each other for the names in the middle
    for name_a, name_b in zip(names, reversed(names)):
        ca.send("messaging", {"command": "registerParticipant", "params": {"name": name_a}, "callId": name_a})
        cb.send("messaging", {"command": "registerParticipant", "params": {"name": name_b}, "callId": name_b})
    won = {}
    for c in (ca, cb):
        for _ in names:
            msg = c.recv(WAIT)["message"]
            if msg["type"] == "response":
                assert msg["callId"] not in won, f"{msg['callId']} registered on both processes"
                won[msg["callId"]] = c
            else:
                assert msg["message"] == "Name already registered"
    assert sorted(won) == sorted(names), "a name nobody got"
    assert ca in won.values() and cb in won.values()
    everything = sorted(names + ["ann", "bea"])
    for c in (ca, cb):  # every register was answered: each process knows them all
        assert c.ok("messaging", "listParticipants") == everything
    # send reaches a participant on the other process, both ways
    on_a, on_b = "ann", "bea"
    ca.ok("messaging", "send", {"sender": on_a, "dest": on_b, "body": {"x": 1}})
    assert cb.next_notification(WAIT)["message"] == {"type": "message", "sender": on_a, "dest": on_b, "body": {"x": 1}}
    cb.ok("messaging", "send", {"sender": on_b, "dest": on_a, "body": "back"})
    assert ca.next_notification(WAIT)["message"] == {"type": "message", "sender": on_b, "dest": on_a, "body": "back"}
    assert ca.call("messaging", "send", {"sender": on_b, "dest": "ann", "body": 1})["message"] == "Invalid sender"
    assert ca.call("messaging", "send", {"sender": "ann", "dest": "nobody", "body": 1})["message"] == "Unknown destination"
    assert ca.call("messaging", "unregisterParticipant", {"name": on_b})["message"] == "Invalid participant"
    # a name given up on B can be registered on A once A has heard of it
    cb.ok("messaging", "unregisterParticipant", {"name": on_b})
    assert on_b not in ca.ok("messaging", "listParticipants")
    ca.ok("messaging", "registerParticipant", {"name": on_b})
    # a closed connection's names go everywhere
    cb.close()
    eventually(lambda: ca.ok("messaging", "listParticipants") == sorted([n for n, c in won.items() if c is ca] + ["ann", "bea"]))


# -- Cursors -----------------------------------------------------------------------


def cursor_added(handle):
    return lambda m: m.get("type") == "cursorAdded" and m["cursor"]["publicHandle"] == handle


def test_cursors_span_processes(cluster, connect):
    a, b = cluster(2, **ENV)
    ann, ben = user(connect, a, "ann"), user(connect, b, "ben")
    ann.ok("cursors", "join", {"document": "doc"})
    h1 = ann.ok("cursors", "createCursor", {"privateHandle": "p", "document": "doc", "position": 1, "status": "x"})
    c1 = {"publicHandle": h1, "document": "doc", "position": 1, "status": "x", "owner": "ann"}
    answer = ben.ok("cursors", "join", {"document": "doc"})
    if answer["cursors"] != [c1]:  # B had not heard of it yet: it comes as a notification
        assert answer["cursors"] == []
        assert until(ben, cursor_added(h1))[0]["cursor"] == c1
    h2 = ben.ok("cursors", "createCursor", {"privateHandle": "p", "document": "doc", "position": 2, "status": "y"})
    assert h2 != h1
    assert until(ann, cursor_added(h2))[0]["cursor"] == {
        "publicHandle": h2, "document": "doc", "position": 2, "status": "y", "owner": "ben"}
    ann.ok("cursors", "updateCursor", {"privateHandle": "p", "newData": {"position": 7}})
    assert ben.next_notification(WAIT)["message"] == {"type": "cursorUpdated", "cursor": {**c1, "position": 7}}
    ben.ok("cursors", "removeCursor", {"privateHandle": "p"})
    assert ann.next_notification(WAIT)["message"] == {"type": "cursorRemoved", "cursor": {"publicHandle": h2, "document": "doc"}}
    ann.ok("cursors", "leave", {"document": "doc"})
    assert ben.next_notification(WAIT)["message"] == {"type": "cursorRemoved", "cursor": {"publicHandle": h1, "document": "doc"}}
    ann.expect_silence(0.3)
    ben.expect_silence(0.3)


def test_public_handles_stay_unique_per_document_across_processes(cluster, connect):
    a, b = cluster(2, **ENV)
    writers = [user(connect, srv, f"u{i}") for i in range(4) for srv in (a, b)]
    watcher = user(connect, a, "watcher")
    watcher.ok("cursors", "join", {"document": "big"})
    for w in writers:
        w.ok("cursors", "join", {"document": "big"})
    for w in writers:  # every connection creates its 16 cursors at once, on both processes
        for i in range(16):
            w.send("cursors", {"command": "createCursor", "callId": i,
                               "params": {"privateHandle": i, "document": "big", "position": i, "status": None}})
    handles = []
    for w in writers:
        got = answers(w, 16)
        assert all(m["type"] == "response" for m in got), got
        handles += [m["data"] for m in got]
    assert len(handles) == 128 and len(set(handles)) == 128
    assert all(isinstance(h, int) and 0 <= h <= 65535 for h in handles)
    seen = set()
    while len(seen) < 128:  # the watcher hears of every one of them, each once
        msg, _ = until(watcher, lambda m: m.get("type") == "cursorAdded")
        assert msg["cursor"]["publicHandle"] not in seen
        seen.add(msg["cursor"]["publicHandle"])
    assert seen == set(handles)
    late = user(connect, b, "late")
    assert len(late.ok("cursors", "join", {"document": "big"})["cursors"]) == 128


# -- Redis restart -------------------------------------------------------------------


def test_state_converges_after_redis_is_killed_and_restarted(cluster, redis_server, connect):
    a, b = cluster(2, **ENV)
    alice, bob = user(connect, a, "alice"), user(connect, b, "bob")
    alice.ok("chat", "join", {"channel": "r"})
    bob.ok("chat", "join", {"channel": "r"})
    until(alice, presence("bob", "joined"))
    ca, cb = connect(a), connect(b)
    ca.ok("messaging", "registerParticipant", {"name": "x"})
    assert cb.ok("messaging", "listParticipants") == ["x"]
    alice.ok("cursors", "join", {"document": "d"})
    bob.ok("cursors", "join", {"document": "d"})

    redis_server.kill()
    for srv in (a, b):
        wait_broker(srv, "disconnected")
    # meanwhile each process goes on serving its own clients
    carol = user(connect, b, "carol")
    carol.ok("chat", "join", {"channel": "r"})
    until(bob, presence("carol", "joined"))
    bob.ok("chat", "leave", {"channel": "r"})
    until(carol, presence("bob", "left"))
    cb.ok("messaging", "registerParticipant", {"name": "y"})
    ca.ok("messaging", "registerParticipant", {"name": "dup"})   # the same name on both:
    cb.ok("messaging", "registerParticipant", {"name": "dup"})   # neither can ask Redis
    h = bob.ok("cursors", "createCursor", {"privateHandle": 0, "document": "d", "position": 0, "status": None})
    alice.expect_silence(0.3)  # A heard of none of it

    again = RedisServer(redis_server.port).start()
    try:
        for srv in (a, b):
            wait_broker(srv, "connected")
        # A learns what happened on B while Redis was away, and tells its clients
        until_all(alice, presence("carol", "joined"), presence("bob", "left"),
                  lambda m: cursor_added(h)(m) and m["cursor"]["owner"] == "bob")
        # the names converge: one "dup", kept by exactly one process
        for c in (ca, cb):
            eventually(lambda: c.ok("messaging", "listParticipants") == ["dup", "x", "y"])

        def holders():
            ans = [c.call("messaging", "send", {"sender": "dup", "dest": "x", "body": 0}) for c in (ca, cb)]
            return [c for c, m in zip((ca, cb), ans) if m["type"] == "response"]
        eventually(lambda: len(holders()) == 1)
        # names are claimed again in the new Redis: "x" is still A's
        assert cb.call("messaging", "registerParticipant", {"name": "x"})["message"] == "Name already registered"
        # and new work spans processes again
        dan = user(connect, b, "dan")
        dan.ok("chat", "join", {"channel": "r"})
        until(alice, presence("dan", "joined"))
    finally:
        again.kill()

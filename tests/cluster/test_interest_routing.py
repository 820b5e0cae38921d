"""Interest routing over three Redis shards (issue #26 items 1 and 2): a
process takes off Redis only the traffic of the channels, groups and names it
has a client for, every service included, and a channel's presence lives and
travels on the channel's own shard.

Three real redis-server (the shards) and three servers A, B, C (one gunicorn
worker each, so each /metrics is one process's) run tests/cluster/routing_app.py.
B is the bystander: what it takes off Redis is its ``broker_messages_in``
(heartbeats excluded).  A window is closed by markers: A and C publish on a
``marks`` channel of each shard, which a page on B subscribes to; once that
page has them all, B has handled everything Redis sent it before on every
shard from A and C (Redis keeps each subscriber's order), so B's count read
then is final, and a window where B took nothing else counts exactly the six
markers.
"""
from __future__ import annotations

import itertools
import select
import threading

import pytest
import redis
import requests

from snorky_sync import wire
from snorky_sync.auth import ConnectionTokens
from snorky_sync.brokers.base import channel_topic
from snorky_sync.brokers.placement import shard_of
from support.datasync_flow import acquire_while_publishing
from support.redis_relay import RedisRelay
from support.servers import API_KEY, ServerProcess, metric
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

from .conftest import RedisServer, wait_broker

SECRET = "routing-test-secret-0123456789abcdef"
MESSAGES_IN = "snorky_broker_messages_in_total"
MARKERS = 6  # a window's markers: A's and C's, one per shard


def topic(family: str, channel) -> str:
    return channel_topic(family, wire.key_to_bytes(wire.json_key(channel)))


def on_shard(family: str, shard: int, prefix: str, skip: int = 0) -> str:
    """A channel name of ``family`` placed on ``shard`` (of 3)."""
    names = (f"{prefix}-{i}" for i in itertools.count())
    found = (n for n in names if shard_of(topic(family, n), 3) == shard)
    return next(itertools.islice(found, skip, None))


def presence_names(channel, service: str = "pubsub", family: str = "pubsub:pubsub") -> tuple[str, str]:
    """The Redis channel and hash key of ``channel``'s presence."""
    ptopic = f"presence:{service}:" + topic(family, channel).rpartition(":")[2]
    return "snorky:" + ptopic, "snorky:presence:" + ptopic


class Trio:
    def __init__(self) -> None:
        self.shards = [RedisServer().start() for _ in range(3)]
        self.redis = [redis.Redis(port=s.port) for s in self.shards]
        self.tokens = ConnectionTokens(SECRET)
        self.pages: list[SnorkyTestClient] = []
        self.servers = [ServerProcess("gunicorn-gevent", app="tests.cluster.routing_app:app", env={
            "SNORKY_REDIS_URL": ",".join(s.url for s in self.shards), "TEST_SECRET": SECRET,
            "SNORKY_CLUSTER_HEARTBEAT": "0.25", "SNORKY_CLUSTER_EXPIRY": "1.0",
            "SNORKY_RATE_LIMIT": "0"}) for _ in range(3)]
        self.a, self.b, self.c = self.servers
        self.ready()
        self.marks = [on_shard("pubsub:marks", s, "mark") for s in range(3)]
        self.watch = self.page(self.b, "watcher")
        for m in self.marks:
            self.watch.ok("marks", "subscribe", {"channel": m})
        self.senders = [self.page(self.a, "marker"), self.page(self.c, "marker")]
        self.seq = 0

    def ready(self) -> None:
        for srv in self.servers:
            wait_broker(srv)
            wait_for(lambda srv=srv: [s["state"] for s in wait_broker(srv)["broker"]["shards"]]
                     == ["connected"] * 3, 20, "every shard connected")

    def page(self, srv: ServerProcess, identity: str) -> SnorkyTestClient:
        c = SnorkyTestClient(f"{srv.ws_url}/ws?token={self.tokens.create(identity)}", timeout=20)
        self.pages.append(c)
        return c

    def settle(self) -> float:
        """B's count once it handled everything A and C sent before (see the module)."""
        self.seq += 1
        for sender in self.senders:
            for m in self.marks:
                sender.ok("marks", "publish", {"channel": m, "message": self.seq})
        for _ in range(MARKERS):
            self.watch.wait_for(lambda msg: msg.get("type") == "message" and msg["message"] == self.seq)
        return metric(self.b, MESSAGES_IN)

    def close(self) -> None:
        for c in self.pages:
            c.close()
        for srv in self.servers:
            srv.stop()
        for s in self.shards:
            s.kill()


@pytest.fixture(scope="module")
def trio():
    t = Trio()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def cluster(trio):
    trio.ready()  # (a test may have restarted a shard)
    return trio


def backend(srv: ServerProcess, command: str, target: str = "control", **params):
    reply = requests.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10, json={
        "service": target, "message": {"command": command, "params": params, "callId": 1}})
    message = reply.json()["message"]
    assert message["type"] == "response", message
    return message["data"]


def numsub(r: redis.Redis, channel: str) -> int:
    return dict(r.pubsub_numsub(channel))[channel.encode()]


def test_presence_lives_and_travels_on_its_channels_shard_only(cluster):
    t = cluster
    room = on_shard("pubsub:pubsub", 1, "room")
    rchan, rkey = presence_names(room)
    ann, amy = t.page(t.a, "ann"), t.page(t.a, "amy")
    cat = t.page(t.c, "cat")
    for p, meta in ((ann, "a1"), (amy, "a2"), (cat, "c1")):
        p.ok("pubsub", "subscribe", {"channel": room, "presence": True, "meta": meta})
    # the entries in Redis on the room's shard only; A and C subscribed to its presence there only
    assert [r.hlen(rkey) for r in t.redis] == [0, 3, 0]
    assert [numsub(r, rchan) for r in t.redis] == [0, 2, 0]
    assert not any(r.pubsub_channels("snorky:presence:pubsub") for r in t.redis)  # no process-wide topic

    # B, with nobody in the room, takes none of its presence traffic
    before = t.settle()
    for i in range(10):
        ann.ok("pubsub", "updatePresence", {"channel": room, "meta": i})
        cat.ok("pubsub", "updatePresence", {"channel": room, "meta": -i})
    for _ in range(3):
        extra = t.page(t.a, "eve")
        extra.ok("pubsub", "subscribe", {"channel": room, "meta": "x"})
        extra.close()
    cat.wait_for(lambda m: m.get("type") == "presenceChange" and m["event"] == "update" and m["meta"] == 9)
    assert t.settle() - before == MARKERS
    # yet B (its only worker answers) answers the backend from the room's hash
    assert backend(t.b, "presenceStats", service="pubsub", channel=room) == {"clients": 3, "users": 3}

    # a page on B joining gets every entry in its answer, then the changes
    bob = t.page(t.b, "bob")
    answer = bob.ok("pubsub", "subscribe", {"channel": room, "presence": True, "meta": "b1"})
    assert sorted((e["identity"], e["meta"]) for e in answer["presence"]) == \
        [("amy", "a2"), ("ann", 9), ("bob", "b1"), ("cat", -9)]
    assert [numsub(r, rchan) for r in t.redis] == [0, 3, 0]
    amy.ok("pubsub", "updatePresence", {"channel": room, "meta": "away"})
    change = bob.wait_for(lambda m: m.get("type") == "presenceChange")
    assert (change["event"], change["identity"], change["meta"]) == ("update", "amy", "away")



def test_presence_is_written_again_when_its_shard_restarts_empty(cluster):
    t = cluster
    room = on_shard("pubsub:pubsub", 2, "restart")
    rchan, rkey = presence_names(room)
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    for p in (ann, cat):
        p.ok("pubsub", "subscribe", {"channel": room, "presence": True, "meta": p is ann})
    assert t.redis[2].hlen(rkey) == 2
    port = t.shards[2].port
    t.shards[2].kill()
    t.shards[2] = RedisServer(port=port).start()  # back, empty
    t.redis[2] = redis.Redis(port=port)
    # each process writes its entries of the shard's channels again, and reads them again
    wait_for(lambda: t.redis[2].hlen(rkey) == 2, 20, "both entries written again")
    wait_for(lambda: numsub(t.redis[2], rchan) == 2, 20, "A and C subscribed again")
    for p in (ann, cat):
        assert p.ok("pubsub", "presenceStats", {"channel": room}) == {"clients": 2, "users": 2}
    ann.ok("pubsub", "updatePresence", {"channel": room, "meta": "back"})
    change = cat.wait_for(lambda m: m.get("type") == "presenceChange" and m["meta"] == "back")
    assert (change["event"], change["identity"]) == ("update", "ann")


# -- every service: B, with no client in it, takes nothing ------------------------------

def publishes(t, service: str, family: str, shard: int, name: str, offset: int | None = None):
    """20 messages from ann on A to a channel of ``service`` (on ``shard``)
    that cat on C subscribes to; ``offset``: the last one's (history)."""
    ch = on_shard(family, shard, name)
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    cat.ok(service, "subscribe", {"channel": ch})

    def run():
        for i in range(20):
            ann.ok(service, "publish", {"channel": ch, "message": i})
        last = cat.wait_for(lambda m: m.get("type") == "message" and m["message"] == 19)
        assert offset is None or last["offset"] == offset
    return run


def pubsub_traffic(t):
    return publishes(t, "marks", "pubsub:marks", 1, "plain")


def history_traffic(t):
    return publishes(t, "hist", "pubhist:hist", 2, "hist", offset=20)


def chat_traffic(t):
    room = on_shard("chatmsg:chat", 0, "chat")
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    for p in (ann, cat):
        p.ok("chat", "join", {"channel": room, "presence": True})

    def run():
        for i in range(10):
            ann.ok("chat", "send", {"channel": room, "body": i})
            cat.ok("chat", "read", {"channel": room})
        ann.ok("chat", "updatePresence", {"channel": room, "meta": "typing"})
        assert cat.wait_for(lambda m: m.get("type") == "message" and m["body"] == 9)
        assert cat.wait_for(lambda m: m.get("type") == "presenceChange")["meta"] == "typing"
    return run


def groups_traffic(t):
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    cat.ok("rooms", "enter", {"room": "g1"})

    def run():
        for i in range(20):
            ann.ok("rooms", "say", {"room": "g1", "text": i})
        assert cat.wait_for(lambda m: m.get("type") == "said" and m["text"] == 19)
    return run


def messaging_traffic(t):
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    ann.ok("messaging", "registerParticipant", {"name": "ann-1"})
    cat.ok("messaging", "registerParticipant", {"name": "cat-1"})
    t.settle()  # the names are known everywhere (the directory: every process)
    t.settle()

    def run():
        for i in range(20):
            ann.ok("messaging", "send", {"sender": "ann-1", "dest": "cat-1", "body": i})
        assert cat.wait_for(lambda m: m.get("type") == "message" and m["body"] == 19)
    return run


@pytest.mark.parametrize("traffic", [pubsub_traffic, history_traffic, chat_traffic, groups_traffic,
                                     messaging_traffic], ids=lambda f: f.__name__.split("_")[0])
def test_a_process_with_no_client_in_it_takes_none_of_its_traffic(cluster, traffic):
    t = cluster
    run = traffic(t)
    before = t.settle()
    run()
    assert t.settle() - before == MARKERS


def cursors_traffic(t):
    ann, cat = t.page(t.a, "ann"), t.page(t.c, "cat")
    for p in (ann, cat):
        p.ok("cursors", "join", {"document": "doc"})

    def run():
        ann.ok("cursors", "createCursor", {"privateHandle": 1, "document": "doc", "position": 0,
                                          "status": None})
        for i in range(10):
            ann.ok("cursors", "updateCursor", {"privateHandle": 1, "newData": {"position": i}})
        assert cat.wait_for(lambda m: m.get("type") == "cursorUpdated" and m["cursor"]["position"] == 9)
    return run


def test_a_process_with_no_client_in_a_document_takes_none_of_its_cursors(cluster):
    # routed per document (services/cursors_routing.py): B, with no client in "doc", takes
    # none of ann's cursor changes off Redis (before: a process-wide replica, 11 more on B)
    test_a_process_with_no_client_in_it_takes_none_of_its_traffic(cluster, cursors_traffic)


def chat_members_traffic(t):
    room = on_shard("chatmsg:chat", 1, "members")
    cat = t.page(t.c, "cat")
    cat.ok("chat", "join", {"channel": room})

    def run():
        for _ in range(5):
            ann = t.page(t.a, "ann")
            ann.ok("chat", "join", {"channel": room})
            ann.close()
        assert cat.wait_for(lambda m: m.get("type") == "presence" and m["status"] == "left")
    return run


def test_a_process_with_no_member_in_a_room_takes_none_of_its_membership(cluster):
    # routed per channel (services/chat_members.py): B, with no member of the room, takes none
    # of ann's joins and leaves off Redis (before: a process-wide replica, 10 more on B)
    test_a_process_with_no_client_in_it_takes_none_of_its_traffic(cluster, chat_members_traffic)


def test_a_join_on_a_process_new_to_the_room_answers_every_processes_members(cluster):
    # C has nobody in the room: its join subscribes, reads the room's members from Redis and
    # answers only then, so A's members are in it (0.1's answer) and C's page is told nothing else
    t = cluster
    room = on_shard("chatmsg:chat", 2, "late-room")
    ann, bob = t.page(t.a, "ann"), t.page(t.a, "bob")
    for p in (ann, bob):
        p.ok("chat", "join", {"channel": room})
    for n in range(3):
        cat = t.page(t.c, f"cat{n}")
        assert sorted(cat.ok("chat", "join", {"channel": room})["members"]) == ["ann", "bob", f"cat{n}"]
        cat.close()
    assert ann.wait_for(lambda m: m.get("type") == "presence" and (m["from"], m["status"]) == ("cat2", "left"))


def datasync_traffic(t):
    token = backend(t.a, "authorizeSubscription", "datasync_backend",
                    items=[{"dealer": "allTodos", "query": None}])
    cat = t.page(t.c, "cat")
    cat.ok("datasync", "acquireSubscription", {"token": token})
    # B holds a subscription of another model (Task): it takes Task's deltas, none of Todo's
    bea = t.page(t.b, "bea")
    bea.ok("datasync", "acquireSubscription", {"token": backend(
        t.b, "authorizeSubscription", "datasync_backend", items=[{"dealer": "allTasks", "query": None}])})

    def run():
        for i in range(5):
            backend(t.a, "publishDeltas", "datasync_backend",
                    deltas=[{"type": "insert", "model": "Todo", "data": {"id": i, "list": "a"}}])
        assert cat.wait_for(lambda m: m.get("type") == "delta" and m["delta"]["data"]["id"] == 4)
    return run


def test_a_process_with_no_subscription_of_a_model_takes_none_of_its_deltas(cluster):
    # routed per model (services/datasync/service.py): B, with no subscription of Todo, takes
    # none of its deltas off Redis (before: one process-wide topic, 5 more on B)
    t = cluster
    test_a_process_with_no_client_in_it_takes_none_of_its_traffic(cluster, datasync_traffic)
    # ... and a batch of both models reaches B's Task subscriber (the Task part only)
    bea = t.page(t.b, "bea2")
    bea.ok("datasync", "acquireSubscription", {"token": backend(
        t.b, "authorizeSubscription", "datasync_backend", items=[{"dealer": "allTasks", "query": None}])})
    backend(t.a, "publishDeltas", "datasync_backend", deltas=[
        {"type": "insert", "model": "Todo", "data": {"id": 99}},
        {"type": "insert", "model": "Task", "data": {"id": 7}}])
    got = bea.wait_for(lambda m: m.get("type") == "delta")
    assert got["delta"] == {"type": "insert", "model": "Task", "data": {"id": 7}}
    bea.expect_silence(0.3)


def test_a_pending_subscription_taken_over_by_another_process_gets_each_delta_once(cluster):
    """Authorized on A (which keeps it pending and buffers its deltas), acquired
    on C (which takes it over: subscribes to Todo's and Task's topics, on shards
    2 and 1, and marks them; A hands over what it buffered before the marks)
    while batches of both models are published through A and C without pause:
    every delta published after the authorization reaches the page once, each
    model's in order, whatever the race."""
    t = cluster
    items = [{"dealer": "allTodos", "query": None}, {"dealer": "allTasks", "query": None}]
    for round_ in range(6):
        acquire_while_publishing(
            lambda: backend(t.a, "authorizeSubscription", "datasync_backend", items=items),
            [lambda d, srv=srv: backend(srv, "publishDeltas", "datasync_backend", deltas=d)
             for srv in (t.a, t.c)],
            lambda r=round_: t.page(t.c, f"taker{r}"), ["Todo", "Task"], before=round_)


# -- the last local subscriber leaving and coming back while messages flow ---------------

def periods(page: SnorkyTestClient, channel) -> list[tuple[int, list[int], list[int]]]:
    """``page``'s subscriptions to ``channel``: (the answer's offset, the offsets
    it received before the answer, those after it until it unsubscribed), from
    everything it read, in order.  Live messages newer than the history read
    come before the answer, whose offset is the last of them (protocol.md)."""
    found: list[tuple[int, list[int], list[int]]] = []
    before: list[int] = []
    current: list[int] | None = None
    for env in page.received:
        msg = env["message"]
        if msg.get("type") == "response" and isinstance(msg.get("data"), dict) and "offset" in msg["data"]:
            current = []
            found.append((msg["data"]["offset"], before, current))
            before = []
        elif msg.get("type") == "response" and msg.get("data") is None:
            current = None  # unsubscribed
        elif msg.get("type") == "message" and msg.get("channel") == channel:
            (before if current is None else current).append(msg["offset"])
    assert not before, f"messages after the last unsubscribe: {before}"
    return found


def test_the_last_local_subscriber_leaving_and_returning_loses_nothing(cluster):
    """B's only subscriber of a channel unsubscribes and another subscribes at
    once (the process wants the channel again while its unsubscription lingers
    or is on its way), and every third time only after Redis shows B gone from
    the channel (a fresh SUBSCRIBE), while A publishes: each of B's
    subscriptions gets every message after its answer's offset, no gap, and
    the pages that stay (on A and C) get them all, in order."""
    t = cluster
    ch = on_shard("pubhist:hist", 1, "race")
    rchan = "snorky:" + topic("pubhist:hist", ch)
    stay = [t.page(t.a, "stay-a"), t.page(t.c, "stay-c")]
    for p in stay:
        p.ok("hist", "subscribe", {"channel": ch})
    publisher = t.page(t.a, "pub")
    churn = [t.page(t.b, "b1"), t.page(t.b, "b2")]
    done = threading.Event()
    sent: list[int] = []

    def publish():
        while not done.is_set():
            publisher.ok("hist", "publish", {"channel": ch, "message": len(sent)})
            sent.append(len(sent) + 1)  # its offset: one page publishes, in order
    thread = threading.Thread(target=publish)
    thread.start()
    try:
        active = None
        for i in range(18):
            if active is not None:
                active.ok("hist", "unsubscribe", {"channel": ch})
                if i % 3 == 0:  # B given up by Redis (after the linger) before the next comes
                    wait_for(lambda: numsub(t.redis[1], rchan) == 2, 10, "B unsubscribed from the channel")
            active = churn[i % 2]
            offset = active.ok("hist", "subscribe", {"channel": ch})["offset"]
            # live messages reach it: two published after its answer
            active.wait_for(lambda m, o=offset: m.get("type") == "message" and m["offset"] >= o + 2)
        active.ok("hist", "unsubscribe", {"channel": ch})
    finally:
        done.set()
        thread.join(20)
    last = sent[-1]
    for p in stay:
        p.wait_for(lambda m: m.get("type") == "message" and m["offset"] == last)
        assert [e["message"]["offset"] for e in p.received if e["message"].get("type") == "message"] == \
            list(range(1, last + 1))
    seen = 0
    for page in churn:
        for offset, early, got in periods(page, ch):
            assert early == list(range(offset + 1 - len(early), offset + 1)), (offset, early)
            assert got == list(range(offset + 1, offset + 1 + len(got))), (offset, got)
            seen += len(got)
    assert seen > 0


# -- a user's command under the lock joining a group -------------------------------------

def test_a_group_join_waits_for_redis_without_holding_the_services_lock(redis_server):
    """``rooms.enter`` (a command under the service's lock) calls join_group,
    whose first member here waits for Redis to confirm the subscription: with
    the worker's subscription connection frozen (a black hole) that wait is
    long, and the service's other calls are answered meanwhile, the join
    answered once the wait is over.  Before, join_group waited holding the
    lock: every other call of the service waited too (and the first members of
    many groups cost one SUBSCRIBE each, bench/routing.py --services)."""
    relay = RedisRelay(redis_server.port)
    srv = ServerProcess("gunicorn-gevent", app="tests.cluster.routing_app:app", env={
        "SNORKY_REDIS_URL": f"redis://127.0.0.1:{relay.port}/0", "TEST_SECRET": SECRET,
        "SNORKY_CLUSTER_HEARTBEAT": "1", "SNORKY_CLUSTER_EXPIRY": "60"})
    tokens = ConnectionTokens(SECRET)
    pages = []
    try:
        wait_broker(srv)
        pages = [SnorkyTestClient(f"{srv.ws_url}/ws?token={tokens.create(n)}") for n in ("p1", "p2")]
        p1, p2 = pages
        p2.ok("rooms", "enter", {"room": "warm"})
        assert relay.freeze_listener(p1.ok("worker", "pid")) == 1
        p1.send("rooms", {"command": "enter", "params": {"room": "new"}, "callId": 99})
        assert p2.ok("rooms", "say", {"room": "warm", "text": "meanwhile"}) == 1
        ready, _, _ = select.select([p1.ws.sock], [], [], 0.5)
        assert not ready, "the join was answered before Redis could confirm it"
        redis_server.kill()  # the connections drop: the wait ends (unconfirmed), the join is answered
        answer = p1.recv()["message"]
        assert (answer["type"], answer["callId"]) == ("response", 99)
    finally:
        for p in pages:
            p.close()
        srv.stop()
        relay.close()


def test_presence_joined_and_left_while_it_changes_stays_exact(cluster):
    """B's only member of a room leaves and another page on B joins (at once,
    or once Redis shows B gone from the room's presence topic), again and again,
    while a page on A updates its entry without pause: each join's answer and
    the changes that follow show A's entry going 1, 2, 3, ... with nothing
    lost or replayed (the read of the room placed among its changes by its
    marker), and a last page on B sees A's final entry."""
    t = cluster
    room = on_shard("pubsub:pubsub", 0, "busy")
    rchan, _ = presence_names(room)
    ann = t.page(t.a, "ann")
    ann.ok("pubsub", "subscribe", {"channel": room, "presence": True, "meta": 0})
    done = threading.Event()
    last = [0]

    def update():
        while not done.is_set():
            ann.ok("pubsub", "updatePresence", {"channel": room, "meta": last[0] + 1})
            last[0] += 1
    thread = threading.Thread(target=update)
    thread.start()
    pages = []
    try:
        for i in range(8):
            if pages:
                pages[-1].ok("pubsub", "unsubscribe", {"channel": room})
                if i % 3 == 0:  # B given up by Redis before the next comes
                    wait_for(lambda: numsub(t.redis[0], rchan) == 1, 10, "B unsubscribed from the presence")
            page = t.page(t.b, f"b{i}")
            pages.append(page)
            answer = page.ok("pubsub", "subscribe", {"channel": room, "presence": True})
            (first,) = [e["meta"] for e in answer["presence"] if e["identity"] == "ann"]
            page.first = first
            page.wait_for(lambda m, f=first: m.get("type") == "presenceChange" and m["meta"] >= f + 2)
        pages[-1].ok("pubsub", "unsubscribe", {"channel": room})
    finally:
        done.set()
        thread.join(20)
    for page in pages:
        seen = [e["message"]["meta"] for e in page.received if e["message"].get("type") == "presenceChange"]
        assert all(e["message"]["event"] == "update" and e["message"]["identity"] == "ann"
                   for e in page.received if e["message"].get("type") == "presenceChange")
        # the changes after the answer, in order, none lost, none replayed (some may come
        # before the answer's frame: the answer lists the entries once its read was placed)
        assert seen == list(range(seen[0], seen[0] + len(seen))) and seen[0] <= page.first + 1, \
            (page.first, seen)
    final = t.page(t.b, "final").ok("pubsub", "subscribe", {"channel": room, "presence": True})
    assert [e["meta"] for e in final["presence"] if e["identity"] == "ann"] == [last[0]]

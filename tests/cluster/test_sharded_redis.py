"""Several Redis shards (issue #26 item 2): SNORKY_REDIS_URL lists three real
redis-server, two gunicorn workers serve a user's app (PubSub with history
and presence, Chat with history, a service's shared tables, DataSync with
resumption, control).

- the channels spread over the three shards, each where the placement says
  (its history keys, and the workers' subscriptions to it, on that shard
  only), and so do shared tables and DataSync resume states; PubSub with
  history and recovery, presence, Chat, DataSync resumption and
  control.disconnect work across the workers;
- one shard killed (2; and 0, which also carries the process-wide topics):
  /healthz says degraded with that shard down, the channels of the other
  shards go on (in order, no gap, new subscribers across workers), those
  of the killed shard answer ``History unavailable``; restarted (empty): its
  channels' subscribers get a gap notification with the new epoch and its
  messages again; nobody else gets a gap.

Before the ShardedBroker a list in SNORKY_REDIS_URL made one RedisBroker of
the whole string, which redis-py read as the first URL: everything on the
first shard, no ``shards`` in /healthz, nothing degraded when shard 2 died
(both tests fail).
"""
from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import redis
import requests

from snorky_sync import wire
from snorky_sync.auth import ConnectionTokens
from snorky_sync.brokers.base import channel_topic
from snorky_sync.brokers.placement import shard_of
from snorky_sync.services.shared import KEY_PREFIX
from support.servers import API_KEY, ServerProcess
from support.waiting import attempts, wait_for
from support.wsclient import SnorkyTestClient, close_of

from .conftest import RedisServer, history_across, recovers_since_first
from .test_own_app import wait_healthy

SECRET = "sharded-test-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent("""
    import os
    import sys

    sys.path.insert(0, os.environ["TEST_ROOT"])

    from flask import Flask

    from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
    from snorky_sync.auth import ConnectionTokens
    from snorky_sync.services.chat import ChatService
    from snorky_sync.services.control import ControlService
    from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
    from snorky_sync.services.pubsub import PubSubService
    from tests.support.dealers import AllTodos


    class Worker(RPCService):  # test-only: which worker a connection reached
        @rpc_command
        def pid(self, req):
            return os.getpid()


    class Tally(RPCService):  # a service's shared tables
        @rpc_command
        def incr(self, req, table):
            return self.shared.incr(table, "n")


    app = Flask(__name__)
    snorky = Snorky(app)
    datasync = DataSyncService("datasync", [AllTodos], resume_window=60)
    frontend = ServiceRegistry([PubSubService("pubsub", history_size=100, presence=True),
                                ChatService("chat", history_size=100), Worker("worker"),
                                Tally("tally"), datasync])
    snorky.websocket("/ws", frontend, authenticate=ConnectionTokens(os.environ["TEST_SECRET"]))
    snorky.backend("/backend", ServiceRegistry([ControlService("control"),
                                                DataSyncBackend("datasync_backend", datasync)]),
                   api_key=os.environ["SNORKY_API_KEY"])
    snorky.health("/healthz")
""")


def topic(family: str, channel) -> str:
    return channel_topic(family, wire.key_to_bytes(wire.json_key(channel)))


def hist_key(service: str, channel) -> str:
    return f"snorky:hist:{service}:{service}:" + hashlib.sha1(wire.key_to_bytes(wire.json_key(channel))).hexdigest()


def channels_per_shard(family: str, n: int) -> dict[int, list[str]]:
    """``n`` channel names for each of the 3 shards."""
    found: dict[int, list[str]] = {0: [], 1: [], 2: []}
    i = 0
    while min(len(v) for v in found.values()) < n:
        name = f"{family.split(':')[0]}-{i}"
        group = found[shard_of(topic(family, name), 3)]
        if len(group) < n:
            group.append(name)
        i += 1
    return found


@pytest.fixture
def sharded(tmp_path):
    shards = [RedisServer().start() for _ in range(3)]
    (tmp_path / "shardedapp.py").write_text(APP)
    srv = None
    clients: list[SnorkyTestClient] = []
    tokens = ConnectionTokens(SECRET)
    try:
        srv = ServerProcess("gunicorn-gevent", app="shardedapp:app", workers=2, cwd=tmp_path,
                            env={"SNORKY_REDIS_URL": ",".join(s.url for s in shards),
                                 "TEST_SECRET": SECRET, "TEST_ROOT": str(ROOT),
                                 "SNORKY_CLUSTER_HEARTBEAT": "0.5", "SNORKY_CLUSTER_EXPIRY": "3"})

        def connect(identity: str, pid: int | None = None, other_than: int | None = None):
            for _ in attempts():  # the kernel spreads connections over the workers
                c = SnorkyTestClient(f"{srv.ws_url}/ws?token={tokens.create(identity)}")
                got = c.ok("worker", "pid")
                if (pid is None or got == pid) and got != other_than:
                    clients.append(c)
                    c.pid = got
                    return c
                c.close()
            raise AssertionError("connections never reached the worker wanted")

        srv.connect = connect
        srv.shards = shards
        srv.redis = [redis.Redis.from_url(s.url) for s in shards]
        wait_healthy(srv)
        yield srv
    finally:
        for c in clients:
            c.close()
        if srv is not None:
            srv.stop()
        for s in shards:
            s.kill()


def backend(srv, service, command, **params):
    reply = requests.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10, json={
        "service": service, "message": {"command": command, "params": params, "callId": 1}})
    assert reply.status_code == 200, reply.text
    message = reply.json()["message"]
    assert message["type"] == "response", message
    return message["data"]


def health(srv):
    return requests.get(srv.url + "/healthz", timeout=5).json()


def where(srv, key: str) -> list[int]:
    """The shards holding ``key``."""
    return [i for i, r in enumerate(srv.redis) if r.exists(key)]


def test_channels_spread_over_the_shards_and_every_service_works_across_workers(sharded):
    srv = sharded
    a = srv.connect("alice")
    b = srv.connect("bob", other_than=a.pid)
    by_shard = channels_per_shard("pubhist:pubsub", 2)
    channels = [c for group in by_shard.values() for c in group]
    # whichever worker answers /healthz: the second one's shards connect as it
    # serves its first request (bob's, a moment ago), so wait for them
    body = wait_for(lambda: (lambda b: b if b["status"] == "ok" else None)(health(srv)), 20,
                    "both workers' three shards connected")
    assert [s["state"] for s in body["broker"]["shards"]] == ["connected"] * 3

    # PubSub with history: subscribed on worker A, published on worker B
    epochs = history_across(a, b, channels)
    # each channel's history on its shard only, and A subscribed to it there only
    for shard, group in by_shard.items():
        for c in group:
            assert where(srv, hist_key("pubsub", c)) == [shard], c
        subscribed = {t.decode() for t in srv.redis[shard].pubsub_channels("snorky:pubhist:pubsub:*")}
        assert subscribed == {"snorky:" + topic("pubhist:pubsub", c) for c in group}
    # recovery on the other worker, on every shard
    recovers_since_first(lambda: srv.connect("carol", pid=b.pid), epochs)

    # presence (on the channel's shard, routed to both workers): both entries, seen from either
    ids = [p.ok("pubsub", "subscribe", {"channel": "lobby", "presence": True})["client"] for p in (a, b)]
    def both(page):
        entries = page.ok("pubsub", "presence", {"channel": "lobby"})["presence"]
        return entries if len(entries) == 2 else None
    for p in (a, b):
        listed = wait_for(lambda p=p: both(p), 10, "both entries")
        assert sorted(e["client"] for e in listed) == sorted(ids)

    # Chat across workers, its history on the room's shard
    rooms = channels_per_shard("chatmsg:chat", 1)
    for shard, (room,) in rooms.items():
        a.ok("chat", "join", {"channel": room})
        b.ok("chat", "join", {"channel": room})
        a.wait_for(lambda m, r=room: m.get("type") == "presence" and m["channel"] == r
                   and m["from"] == "bob" and m["status"] == "joined")
        b.ok("chat", "send", {"channel": room, "body": "hi " + room})
        got = a.wait_for(lambda m, r=room: m.get("type") == "message" and m["channel"] == r)
        assert (got["from"], got["body"], got["offset"]) == ("bob", "hi " + room, 1)
        assert where(srv, hist_key("chat", room)) == [shard]

    # shared tables: one count across workers, each table on its key's shard
    tables = [f"t{i}" for i in range(9)]
    for t in tables:
        assert (a.ok("tally", "incr", {"table": t}), b.ok("tally", "incr", {"table": t})) == (1, 2)
    placed = {}
    for t in tables:
        key = KEY_PREFIX + channel_topic("tally", t.encode())
        placed[t] = where(srv, key)
        assert placed[t] == [shard_of(key, 3)]
    assert {p[0] for p in placed.values()} == {0, 1, 2}

    # DataSync: a subscription detached on A resumes on B (its state on its key's shard)
    for _ in range(3):
        token = backend(srv, "datasync_backend", "authorizeSubscription",
                        items=[{"dealer": "allTodos", "query": None}])
        dana = srv.connect("dana", pid=a.pid)
        assert dana.call("datasync", "acquireSubscription", {"token": token})["type"] == "response"
        backend(srv, "datasync_backend", "publishDeltas",
                deltas=[{"type": "insert", "model": "Todo", "data": {"id": 1, "list": "a"}}])
        last = dana.wait_for(lambda m: m.get("type") == "delta")
        dana.close()
        key = "snorky:resume:datasync:" + hashlib.sha1(token.encode()).hexdigest()
        wait_for(lambda key=key: where(srv, key) == [shard_of(key, 3)], 20, "the resume state on its shard")
        backend(srv, "datasync_backend", "publishDeltas",
                deltas=[{"type": "insert", "model": "Todo", "data": {"id": 2, "list": "a"}}])
        back = srv.connect("dana", pid=b.pid)
        answer = back.call("datasync", "acquireSubscription",
                           {"token": token, "since": last["seq"], "epoch": last["epoch"]})
        assert answer["data"]["recovered"] is True, answer
        assert [n["message"]["delta"]["data"]["id"] for n in back.notifications] == [2]
        back.close()

    # control.disconnect (shard 0): an identity's pages on both workers closed
    victims = [srv.connect("eve", pid=a.pid), srv.connect("eve", pid=b.pid)]
    backend(srv, "control", "disconnect", identity="eve", reconnect=False, reason="bye")
    for v in victims:
        assert close_of(v.ws, 5) == (4003, "bye")
    assert a.ok("worker", "pid") == a.pid and b.ok("worker", "pid") == b.pid


@pytest.mark.parametrize("killed", [2, 0])  # 0 also carries the process-wide topics
def test_a_killed_shard_leaves_the_others_working_and_its_channels_signal_their_gap(sharded, killed):
    srv = sharded
    a = srv.connect("alice")
    b = srv.connect("bob", other_than=a.pid)
    by_shard = channels_per_shard("pubhist:pubsub", 2)
    fresh = {s: group.pop() for s, group in by_shard.items()}  # subscribed during the outage
    epochs = {c: a.ok("pubsub", "subscribe", {"channel": c})["epoch"]
              for (c,) in by_shard.values()}
    for c in epochs:
        b.ok("pubsub", "publish", {"channel": c, "message": 1})
        assert a.wait_for(lambda m, c=c: m.get("type") == "message" and m["channel"] == c)["offset"] == 1

    port = srv.shards[killed].port
    srv.shards[killed].kill()
    body = wait_for(lambda: (lambda h: h if h["broker"]["state"] == "degraded" else None)(health(srv)),
                    20, "the broker degraded")
    assert body["status"] == "degraded"
    assert [s["state"] for s in body["broker"]["shards"]] == \
        ["disconnected" if i == killed else "connected" for i in range(3)]
    (lost,) = by_shard[killed]
    kept = [c for s, (c,) in by_shard.items() if s != killed]
    # the other shards' channels go on, in order
    for c in kept:
        b.ok("pubsub", "publish", {"channel": c, "message": 2})
        m = a.wait_for(lambda m, c=c: m.get("type") == "message" and m["channel"] == c)
        assert (m["offset"], m["epoch"]) == (2, epochs[c])
    # and take new subscribers across workers
    for s, c in fresh.items():
        if s == killed:
            continue
        late = srv.connect("carol", pid=a.pid)
        epoch = late.ok("pubsub", "subscribe", {"channel": c})["epoch"]
        b.ok("pubsub", "publish", {"channel": c, "message": "new"})
        m = late.wait_for(lambda m: m.get("type") == "message")
        assert (m["channel"], m["offset"], m["epoch"], m["message"]) == (c, 1, epoch, "new")
    # the killed shard's: refused, not lost silently
    answer = b.call("pubsub", "publish", {"channel": lost, "message": 2})
    assert answer == {"type": "error", "callId": answer["callId"], "message": "History unavailable"}

    srv.shards[killed] = RedisServer(port=port).start()  # back, empty
    gap = a.wait_for(lambda m: m.get("type") == "gap", timeout=30)
    assert gap["channel"] == lost and gap["epoch"] != epochs[lost] and gap["offset"] == 0
    wait_healthy(srv)
    b.ok("pubsub", "publish", {"channel": lost, "message": 3})
    m = a.wait_for(lambda m: m.get("type") == "message" and m["channel"] == lost)
    assert (m["offset"], m["epoch"], m["message"]) == (1, gap["epoch"], 3)
    assert where(srv, hist_key("pubsub", lost)) == [killed]
    # nobody else got a gap: the kept channels go on at 3
    for c in kept:
        b.ok("pubsub", "publish", {"channel": c, "message": 3})
        m = a.wait_for(lambda m, c=c: m.get("type") == "message" and m["channel"] == c)
        assert (m["offset"], m["epoch"]) == (3, epochs[c])
    gaps = [e["message"] for e in a.received if e["message"].get("type") == "gap"]
    assert [g["channel"] for g in gaps] == [lost]

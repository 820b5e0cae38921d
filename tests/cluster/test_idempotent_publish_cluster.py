"""Idempotent publishing across workers (issue #25 item 2): two default-app
processes on a real redis-server; a publish retried on the other worker with
the same idempotencyKey — a page's over WebSocket, the backend's over HTTP,
and a retry racing the first — is delivered once to the subscribers of both
workers and answered as the first was (with history: the same offset)."""
import itertools
import threading
from types import SimpleNamespace

import pytest
import redis

from snorky_sync import wire
from snorky_sync.backend import HTTPTransport, SnorkyBackend
from snorky_sync.brokers.base import channel_topic
from snorky_sync.brokers.placement import shard_of
from snorky_sync.services.idempotency import KEY_PREFIX, Idempotency, scope
from support.servers import API_KEY, ServerProcess
from support.wsclient import SnorkyTestClient

from .conftest import RedisServer, wait_broker

ENV = {"SNORKY_PUBSUB_HISTORY_SIZE": "100"}


def received(ws, channel, marker="marker"):
    got = []
    while (msg := ws.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel, 15)
           )["message"] != marker:
        got.append((msg["message"], msg["offset"]))
    return got


def test_a_retry_on_the_other_worker_is_delivered_once(cluster, connect, redis_server):
    a, b = cluster(2, **ENV)
    subs = [connect(a), connect(b)]
    for s in subs:
        s.ok("pubsub", "subscribe", {"channel": "orders"})
    pa, pb = connect(a), connect(b)
    for p in (pa, pb):
        p.ok("pubsub", "subscribe", {"channel": "orders"})
    params = {"channel": "orders", "message": "page", "excludeSender": True, "idempotencyKey": "page-1"}
    first = pa.ok("pubsub", "publish", params)
    assert pb.ok("pubsub", "publish", params) == first         # the other worker answers the first's offset

    backends = [SnorkyBackend(HTTPTransport(s.url + "/backend", key=API_KEY)) for s in (a, b)]
    for backend in backends * 2:
        backend.publish("orders", "backend", idempotency_key="backend-1")

    # retries racing each other on both workers: one of them publishes
    barrier = threading.Barrier(8)
    errors = []

    def retry(backend):
        try:
            barrier.wait(10)
            backend.publish("orders", "raced", idempotency_key="race-1")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=retry, args=(backends[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    backends[0].publish("orders", "marker")
    for s in subs:
        got = received(s, "orders")
        assert [m for m, _ in got] == ["page", "backend", "raced"]
        assert got[0][1] == first["offset"]
        assert [o for _, o in got] == list(range(first["offset"], first["offset"] + 3))
    keys = redis.Redis(port=redis_server.port).keys("snorky:idem:pubsub:*")
    assert len(keys) == 3                                      # one per key, shared by both workers


def off_shard_key(channel, shards):
    """An idempotencyKey whose claim, placed by its own name, would not be on
    ``channel``'s shard (with one shard: any)."""
    store = Idempotency(SimpleNamespace(name="pubsub"))
    home = shard_of(channel_topic("pubhist:pubsub", wire.key_to_bytes(wire.json_key(channel))), shards)
    for i in itertools.count():
        name = store.digest(scope(wire.json_key(channel), None), f"order-{i}".encode())
        if shards == 1 or shard_of(f"{KEY_PREFIX}pubsub:{name.hex()}", shards) != home:
            return f"order-{i}"


@pytest.mark.parametrize("shards", [1, 3])
def test_a_worker_killed_after_appending_leaves_its_answer_for_the_retry(connect, shards):
    """A publish with a key on a history channel: its worker SIGKILLed right
    after the append script numbered and published the message, before the
    call went on (tests/cluster/kill_app.py).  The retry on the other worker
    publishes nothing and is answered the first's offset, as recorded by the
    append itself: the subscriber gets the message once.  With several Redis
    shards the key is claimed on the channel's shard, with its history."""
    redises = [RedisServer().start() for _ in range(shards)]
    env = {"SNORKY_REDIS_URL": ",".join(r.url for r in redises), **ENV}
    servers = []
    try:
        servers += [ServerProcess(app="tests.cluster.kill_app:app", env=env) for _ in range(2)]
        for srv in servers:
            wait_broker(srv)
        doomed, survivor = servers
        sub = connect(survivor)
        sub.ok("pubsub", "subscribe", {"channel": "orders"})
        params = {"channel": "orders", "message": {"killAfterAppend": doomed.proc.pid},
                  "excludeSender": True, "idempotencyKey": off_shard_key("orders", shards)}
        first = connect(doomed)
        first.send("pubsub", {"command": "publish", "params": params, "callId": 1})  # never answered
        doomed.proc.wait(15)
        assert doomed.proc.returncode == -9
        delivered = sub.wait_for(lambda m: m.get("type") == "message", 15)
        assert delivered["message"] == params["message"]  # the dead worker published it

        retry = SnorkyTestClient(survivor.ws_url + "/ws", timeout=30)  # longer than a pending claim
        try:
            answer = retry.ok("pubsub", "publish", params)
        finally:
            retry.close()
        assert answer == {"offset": delivered["offset"], "epoch": delivered["epoch"]}
        connect(survivor).ok("pubsub", "publish", {"channel": "orders", "message": "marker"})
        assert received(sub, "orders") == []       # nothing between: not published again
        clients = [redis.Redis(port=r.port) for r in redises]
        assert [bool(c.keys("snorky:idem:pubsub:*")) for c in clients] == \
            [bool(c.keys("snorky:hist:*")) for c in clients]          # the claim with the history
        assert sum(len(c.keys("snorky:idem:pubsub:*")) for c in clients) == 1
    finally:
        for srv in servers:
            srv.stop()
        for r in redises:
            r.kill()

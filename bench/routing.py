"""python -m bench.routing: Redis subscription churn under connection churn, and
what a worker receives of traffic it has no subscriber for.

    python -m bench.routing [--clients 200] [--rounds 20] [--channels 100] [--flood 2000]
    python -m bench.routing --services [--conn-clients 100] [--conn-rounds 5] [--channels 100]

Starts its own redis-server and two default-app workers (embedded) on it.

Churn: ``--clients`` connections per worker each subscribe to a random
channel of ``--channels`` and unsubscribe from it, ``--rounds`` times, all at
once; then the same with a fresh channel name for every subscribe (the worst
case: nothing to reuse).  Reported from Redis' own ``INFO commandstats``:
SUBSCRIBE and UNSUBSCRIBE commands (each may carry many channels), and from
the workers' metrics the channels they subscribed and gave up.

Connection churn, every routed service (``--services``): two one-worker
gunicorn servers of tests/cluster/routing_app.py (PubSub, PubSub with
presence, Chat with presence, Cursors, a user's groups, DataSync) on one redis-server;
for each service, ``--conn-rounds`` times, ``--conn-clients`` new connections
per worker each join one of ``--channels`` channels (documents, groups) and
disconnect.  Reported: SUBSCRIBE and UNSUBSCRIBE commands (``INFO
commandstats``) per connection churned, once every channel was given up.

Flood: a client on worker B publishes ``--flood`` 1 KB messages on a channel
only a client on A subscribes to; once that one has them all, A publishes a
marker on a channel a client on B subscribes to: once B's client has it, B
has handled everything Redis sent it before.  Reported: what each worker took
off Redis (``broker_messages_in``, heartbeats excluded) meanwhile.
"""
from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cluster.conftest import RedisServer, wait_broker  # noqa: E402

from snorky_sync.auth import ConnectionTokens  # noqa: E402
from support.servers import ServerProcess, free_port, metric  # noqa: E402
from support.wsclient import SnorkyTestClient  # noqa: E402

ENV = {"SNORKY_RATE_LIMIT": "0", "SNORKY_CONNECT_RATE": "0"}


def commands(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in ("subscribe", "unsubscribe", "publish")}


def worker_metric(servers, name: str) -> int:
    return int(sum(metric(s, f"snorky_{name}_total") for s in servers))


def churn(servers, r: redis.Redis, clients: int, rounds: int, pick) -> dict:
    conns = [SnorkyTestClient(s.ws_url + "/ws", timeout=60) for s in servers for _ in range(clients)]
    before = commands(r)
    subs0 = worker_metric(servers, "broker_channels_subscribed")
    unsubs0 = worker_metric(servers, "broker_channels_unsubscribed")
    errors: list[str] = []

    def run(i: int, c: SnorkyTestClient) -> None:
        try:
            for k in range(rounds):
                channel = pick(i, k)
                c.ok("pubsub", "subscribe", {"channel": channel})
                c.ok("pubsub", "unsubscribe", {"channel": channel})
        except Exception as exc:  # reported, not raised: the figures say how far it got
            errors.append(repr(exc))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    subscribed = worker_metric(servers, "broker_channels_subscribed") - subs0
    # every channel is given up once its linger (SNORKY_CLUSTER_EXPIRY) is over
    deadline = time.monotonic() + 60
    while worker_metric(servers, "broker_channels_unsubscribed") - unsubs0 < subscribed:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    after = commands(r)
    return {"ops": len(conns) * rounds, "seconds": elapsed,
            "subscribe_cmds": after["subscribe"] - before["subscribe"],
            "unsubscribe_cmds": after["unsubscribe"] - before["unsubscribe"],
            "channels_subscribed": subscribed,
            "channels_unsubscribed": worker_metric(servers, "broker_channels_unsubscribed") - unsubs0,
            "errors": len(errors)}


def datasync_acquire(c: SnorkyTestClient, ch: str, srv: ServerProcess) -> None:
    """A page's DataSync: a token from the worker's backend (as a web app
    would get it), acquired on the same connection; dealer by channel (two
    models: routed per model, so two topics at most)."""
    dealer = "allTodos" if int(ch[2:]) % 2 else "allTasks"
    answer = srv.post_backend("datasync_backend", {"command": "authorizeSubscription", "callId": 1,
                                                   "params": {"items": [{"dealer": dealer, "query": None}]}})
    c.ok("datasync", "acquireSubscription", {"token": answer.json()["message"]["data"]})


#: what one connection does in each service (tests/cluster/routing_app.py), on
#: channel ``ch`` (``srv``: the worker it is connected to)
SERVICES = {
    "PubSub": lambda c, ch, srv: c.ok("marks", "subscribe", {"channel": ch}),
    "PubSub + presence": lambda c, ch, srv: c.ok("pubsub", "subscribe", {"channel": ch, "presence": True}),
    "Chat (presence on)": lambda c, ch, srv: c.ok("chat", "join", {"channel": ch}),
    "Cursors": lambda c, ch, srv: c.ok("cursors", "join", {"document": ch}),
    "groups (join_group)": lambda c, ch, srv: c.ok("rooms", "enter", {"room": ch}),
    "DataSync (2 models)": datasync_acquire,
}
SECRET = "bench-routing-secret-0123456789abcdef"


def connection_churn(servers, r: redis.Redis, action, clients: int, rounds: int, channels: int) -> dict:
    """``rounds`` times: ``clients`` new connections per worker, at once, each
    doing ``action`` on a channel of the pool, then closing."""
    tokens = ConnectionTokens(SECRET)
    rng = random.Random(2)
    before = commands(r)
    subs0 = worker_metric(servers, "broker_channels_subscribed")
    unsubs0 = worker_metric(servers, "broker_channels_unsubscribed")
    errors: list[str] = []

    def run(srv, n: int) -> None:
        try:
            c = SnorkyTestClient(f"{srv.ws_url}/ws?token={tokens.create(f'u{n}')}", timeout=60)
        except Exception as exc:
            errors.append(repr(exc))
            return
        try:
            action(c, f"ch{rng.randrange(channels)}", srv)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            c.close()

    t0 = time.perf_counter()
    n = 0
    for _ in range(rounds):
        threads = []
        for srv in servers:
            for _ in range(clients):
                n += 1
                threads.append(threading.Thread(target=run, args=(srv, n)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - t0
    subscribed = worker_metric(servers, "broker_channels_subscribed") - subs0
    deadline = time.monotonic() + 60  # every channel given up after its linger
    while worker_metric(servers, "broker_channels_unsubscribed") - unsubs0 < subscribed:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    after = commands(r)
    return {"connections": n, "seconds": elapsed,
            "subscribe_cmds": after["subscribe"] - before["subscribe"],
            "unsubscribe_cmds": after["unsubscribe"] - before["unsubscribe"],
            "channels_subscribed": subscribed,
            "channels_unsubscribed": worker_metric(servers, "broker_channels_unsubscribed") - unsubs0,
            "errors": len(errors)}


def services_churn(args) -> None:
    rs = RedisServer().start()
    r = redis.Redis(port=rs.port)
    servers = []
    try:
        for _ in range(2):
            srv = ServerProcess("gunicorn-gevent", app="tests.cluster.routing_app:app", env={
                "SNORKY_REDIS_URL": rs.url, "TEST_SECRET": SECRET, **ENV,
                "SNORKY_MAX_CONNECTIONS_PER_IDENTITY": "100000"})
            servers.append(srv)
            wait_broker(srv)
        rows = [(name, connection_churn(servers, r, action, args.conn_clients, args.conn_rounds, args.channels))
                for name, action in SERVICES.items()]
        print(f"\nConnection churn: 2 workers x {args.conn_rounds} rounds x {args.conn_clients} new "
              f"connections per worker, each joining one of {args.channels} channels and disconnecting\n")
        print("| service | connections churned | SUBSCRIBE cmds | UNSUBSCRIBE cmds | commands per connection "
              "| channels subscribed | channels given up | seconds | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in rows:
            per = (row["subscribe_cmds"] + row["unsubscribe_cmds"]) / max(1, row["connections"])
            print(f"| {name} | {row['connections']} | {row['subscribe_cmds']} | {row['unsubscribe_cmds']} "
                  f"| {per:.3f} | {row['channels_subscribed']} | {row['channels_unsubscribed']} "
                  f"| {row['seconds']:.1f} | {row['errors']} |")
    finally:
        for srv in servers:
            srv.stop()
        rs.kill()


def flood(a, b, n: int) -> dict:
    """A client on B floods a channel only A subscribes to."""
    sub_a = SnorkyTestClient(a.ws_url + "/ws", timeout=60)
    sub_a.ok("pubsub", "subscribe", {"channel": "only-on-a"})
    marker = SnorkyTestClient(b.ws_url + "/ws", timeout=60)
    marker.ok("pubsub", "subscribe", {"channel": "marker"})
    pub = SnorkyTestClient(b.ws_url + "/ws", timeout=60)
    a0, b0 = metric(a, "snorky_broker_messages_in_total"), metric(b, "snorky_broker_messages_in_total")
    t0 = time.perf_counter()
    for start in range(0, n, 200):  # in steps a Python reader keeps up with (its queue is bounded)
        for i in range(start, min(n, start + 200)):
            pub.send("pubsub", {"command": "publish", "params": {"channel": "only-on-a",
                                                                 "message": {"i": i, "pad": "x" * 1000}}})
        for _ in range(start, min(n, start + 200)):
            sub_a.wait_for(lambda m: m.get("channel") == "only-on-a")
    elapsed = time.perf_counter() - t0
    # through Redis after the flood: once B has it, B has handled all Redis sent it before
    sub_a.ok("pubsub", "publish", {"channel": "marker", "message": "end"})
    marker.wait_for(lambda m: m.get("channel") == "marker")
    result = {"published": n, "seconds": elapsed,
              "a_in": int(metric(a, "snorky_broker_messages_in_total") - a0),
              "b_in": int(metric(b, "snorky_broker_messages_in_total") - b0)}
    for c in (sub_a, marker, pub):
        c.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=200, help="connections per worker")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--flood", type=int, default=2000)
    ap.add_argument("--services", action="store_true", help="connection churn of every routed service")
    ap.add_argument("--conn-clients", type=int, default=100, help="new connections per worker and round")
    ap.add_argument("--conn-rounds", type=int, default=5)
    args = ap.parse_args()
    if args.services:
        services_churn(args)
        return
    rs = RedisServer().start()
    r = redis.Redis(port=rs.port)
    servers = []
    try:
        for _ in range(2):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": rs.url, **ENV})
            servers.append(srv)
            wait_broker(srv)
        rng = random.Random(1)
        rows = [("pool of %d channels" % args.channels,
                 churn(servers, r, args.clients, args.rounds, lambda i, k: f"c{rng.randrange(args.channels)}")),
                ("a new channel every time",
                 churn(servers, r, args.clients, args.rounds, lambda i, k: f"u{i}-{k}"))]
        print(f"\nChurn: 2 workers x {args.clients} connections x {args.rounds} rounds "
              "of subscribe + unsubscribe, all connections at once\n")
        print("| channels | client subscribes | SUBSCRIBE cmds | UNSUBSCRIBE cmds | channels subscribed "
              "| channels given up | seconds | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in rows:
            print(f"| {name} | {row['ops']} | {row['subscribe_cmds']} | {row['unsubscribe_cmds']} "
                  f"| {row['channels_subscribed']} | {row['channels_unsubscribed']} | {row['seconds']:.1f} "
                  f"| {row['errors']} |")
        print("\n(a channel is given up SNORKY_CLUSTER_EXPIRY seconds after its last subscriber on "
              "that worker left; the figures include those UNSUBSCRIBEs)")
        f = flood(servers[0], servers[1], args.flood)
        print(f"\nFlood: {f['published']} publishes from B on a channel only A subscribes to "
              f"({f['seconds']:.1f} s): A took {f['a_in']} messages off Redis, B took {f['b_in']} "
              "(the marker)\n")
    finally:
        for srv in servers:
            srv.stop()
        rs.kill()


if __name__ == "__main__":
    main()

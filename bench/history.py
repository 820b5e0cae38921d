"""python -m bench.history: what PubSub history costs, and how fast 1,000 pages recover.

    python -m bench.history [--subscribers 1000] [--publishes 2000] [--recovering 1000] [--redis]

Runs the default app (embedded, one process) twice: history off, and
``SNORKY_PUBSUB_HISTORY_SIZE=1000``.  Fan-out: ``--subscribers`` raw
WebSocket subscribers, one publisher pipelining ``--publishes`` messages;
every frame is parsed and counted (with history the frames differ in their
offset).  Recovery (history on): ``--recovering`` subscribers each got 10
messages, all drop, 100 more are published, all reconnect at once with
``since``; reported: time until every one has its 100 missed messages and its
``recovered: true`` answer.  Server pinned to core 0, generator to core 1.

``--redis``: the same through a redis-server of its own (``SNORKY_REDIS_URL``):
with history on, every message takes the positioning path (offsets given by
Redis, the per-channel track of the last offset delivered, the catch-up on a
jump), so the two rows are fan-out with positioning on and off.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from cluster.conftest import RedisServer  # noqa: E402

from bench.quick import ENV, cpu_seconds, masked, read_frames, server_pid, ws_connect  # noqa: E402
from support.servers import ServerProcess  # noqa: E402


def subscribe_all(port: int, n: int, params: dict) -> list:
    msg = masked({"service": "pubsub", "message": {"command": "subscribe", "params": params, "callId": 1}})
    socks = [ws_connect(port) for _ in range(n)]
    for s in socks:
        s.sendall(msg)
    return socks


def pump(socks, want, on_frame, deadline: float) -> None:
    """Read every socket until ``want(i)`` is False for all (``on_frame(i, payload)``)."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        bufs[i] = bytearray()
    left = {i for i in range(len(socks)) if want(i)}
    while left and time.perf_counter() < deadline:
        for key, _ in sel.select(1):
            i = key.data
            try:
                chunk = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            bufs[i] += chunk
            for payload in read_frames(bufs[i]):
                on_frame(i, payload)
            if not want(i):
                left.discard(i)
    sel.close()


def fanout(port: int, pid: int, n_subs: int, n_pubs: int) -> dict:
    subs = subscribe_all(port, n_subs, {"channel": "bench"})
    answered = [0] * n_subs
    pump(subs, lambda i: not answered[i], lambda i, p: answered.__setitem__(i, 1), time.perf_counter() + 60)
    got = [0] * n_subs
    pub = ws_connect(port)
    batch = masked({"service": "pubsub", "message": {"command": "publish", "params": {
        "channel": "bench", "message": {"b": "x" * 50}}}}) * 50
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    threading.Thread(target=lambda: [pub.sendall(batch) for _ in range(n_pubs // 50)], daemon=True).start()

    def frame(i, payload):
        if b'"type":"message"' in payload:
            got[i] += 1
    pump(subs, lambda i: got[i] < n_pubs, frame, t0 + 180)
    dt = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    for s in subs + [pub]:
        s.close()
    return {"deliveries/s": sum(got) / dt, "lost": n_subs * n_pubs - sum(got), "server CPU": cpu / dt}


def recovery(port: int, n: int) -> dict:
    subs = subscribe_all(port, n, {"channel": "rec"})
    pos = [None] * n
    pump(subs, lambda i: pos[i] is None,
         lambda i, p: pos.__setitem__(i, json.loads(p)["message"]["data"]), time.perf_counter() + 60)
    pub = ws_connect(port)

    def publish(k, start):
        pub.sendall(b"".join(masked({"service": "pubsub", "message": {"command": "publish", "params": {
            "channel": "rec", "message": start + j}}}) for j in range(k)))

    publish(10, 0)
    seen = [0] * n
    last = [0] * n

    def frame(i, payload):
        msg = json.loads(payload)["message"]
        if msg.get("type") == "message":
            seen[i] += 1
            last[i] = msg["offset"]
    pump(subs, lambda i: seen[i] < 10, frame, time.perf_counter() + 60)
    witness = subscribe_all(port, 1, {"channel": "rec"})  # stays: the 100 are in once it has them
    heard = [0]
    pump(witness, lambda i: not heard[0], lambda i, p: heard.__setitem__(0, 1), time.perf_counter() + 60)
    heard[0] = 0
    for s in subs:
        s.close()
    publish(100, 10)

    def witnessed(i, payload):
        if b'"type":"message"' in payload:
            heard[0] += 1
    pump(witness, lambda i: heard[0] < 100, witnessed, time.perf_counter() + 60)
    epoch = pos[0]["epoch"]
    missed = [0] * n
    answers = [None] * n
    t0 = time.perf_counter()
    back = [ws_connect(port) for _ in range(n)]
    for i, s in enumerate(back):
        s.sendall(masked({"service": "pubsub", "message": {"command": "subscribe", "callId": 1, "params": {
            "channel": "rec", "since": {"offset": last[i], "epoch": epoch}}}}))

    def frame2(i, payload):
        msg = json.loads(payload)["message"]
        if msg.get("type") == "message":
            missed[i] += 1
        elif msg.get("type") == "response":
            answers[i] = msg["data"]
    pump(back, lambda i: answers[i] is None, frame2, t0 + 120)
    dt = time.perf_counter() - t0
    for s in back + witness + [pub]:
        s.close()
    ok = sum(1 for i in range(n) if answers[i] and answers[i].get("recovered") and missed[i] == 100)
    return {"seconds": dt, "recovered": ok, "of": n}


def run(history: int, args, redis_url: str | None = None) -> dict:
    env = dict(ENV, SNORKY_PUBSUB_HISTORY_SIZE=str(history))
    if redis_url:
        env["SNORKY_REDIS_URL"] = redis_url
    # the embedded server is not monkey-patched at import, as Redis needs: one gunicorn gevent worker
    srv = ServerProcess("gunicorn-gevent" if redis_url else "embedded", app="wsgi:app", env=env)
    try:
        pid = server_pid(srv)
        if os.cpu_count() and os.cpu_count() >= 2:
            os.sched_setaffinity(pid, {0})
            os.sched_setaffinity(0, {1})
        out = {"history": history, "fanout": fanout(srv.port, pid, args.subscribers, args.publishes)}
        if history:
            out["recovery"] = recovery(srv.port, args.recovering)
        return out
    finally:
        srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--publishes", type=int, default=2000)
    ap.add_argument("--recovering", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--redis", action="store_true", help="through a redis-server of its own")
    args = ap.parse_args(argv)
    redis = RedisServer().start() if args.redis else None
    rows = []
    try:
        for history in (0, 1000):
            runs = [run(history, args, redis and redis.url) for _ in range(args.repeat)]
            runs.sort(key=lambda r: r["fanout"]["deliveries/s"])
            rows.append(runs[len(runs) // 2])   # the median run
    finally:
        if redis:
            redis.kill()
    off, on = rows
    through = ", through Redis" if args.redis else ""
    print(f"| PubSub fan-out{through}, {args.subscribers} subscribers x {args.publishes} publishes "
          f"(median of {args.repeat}) | deliveries/s | lost | server CPU |")
    print("|---|---:|---:|---:|")
    for label, r in (("history off", off), ("history on (1000 per channel)", on)):
        f = r["fanout"]
        print(f"| {label} | {f['deliveries/s']:,.0f} | {f['lost']} | {f['server CPU']:.0%} |")
    print(f"| history on / off | {on['fanout']['deliveries/s'] / off['fanout']['deliveries/s']:.0%} | | |")
    rec = on["recovery"]
    print(f"\n{rec['of']} subscribers reconnecting at once with since, 100 missed each: "
          f"{rec['recovered']} recovered in {rec['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

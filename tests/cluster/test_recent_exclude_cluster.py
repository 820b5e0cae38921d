"""PubSub ``recent`` and ``excludeSender`` on two gunicorn workers and a real
redis-server (issue #25 items 5-6).

recent: while a page on each worker publishes without pause, pages subscribe
with ``recent: 5`` on both workers: each sees contiguous offsets from its
first, every one once (the last 5 at the read before its answer, then live).

excludeSender: ann publishes with it on worker A while bob publishes without
pause on worker B; ann's connection receives, in arrival order, bob's
messages and its own answers, whose offsets together are every offset once,
in order (the answer takes the message's place); ann's page on worker B and
bob's pages get every message, ann's included.

The app: tests/cluster/control_app.py (conftest's ``control_cluster``).
"""
from __future__ import annotations

import threading


def offsets_until(page, channel, last, seen):
    while seen[-1] < last:
        msg = page.wait_for(lambda m: m.get("type") == "message" and m.get("channel") == channel)
        seen.append(msg["offset"])
    return seen


def test_recent_on_both_workers_under_concurrent_publishes(control_cluster):
    cluster = control_cluster()
    stop = threading.Event()
    counts = []
    try:
        publishers = [group[0] for group in cluster.spread("pub", 1).values()]
        for i in range(10):
            publishers[0].ok("pubsub", "publish", {"channel": "feed", "message": i})

        def publish(page):
            n = 0
            while not stop.is_set() and n < 2000:
                page.ok("pubsub", "publish", {"channel": "feed", "message": n})
                n += 1
            counts.append(n)
        threads = [threading.Thread(target=publish, args=(page,), daemon=True) for page in publishers]
        for t in threads:
            t.start()
        pages = [p for group in cluster.spread("sub", 4).values() for p in group[:4]]
        for page in pages:
            page.notifications.clear()
            answer = page.ok("pubsub", "subscribe", {"channel": "feed", "recent": 5})
            before = [env["message"]["offset"] for env in page.notifications
                      if env["message"].get("type") == "message"]
            page.notifications.clear()
            assert len(before) >= 5 and before == list(range(before[0], before[-1] + 1)), before
            assert answer["offset"] == before[-1]
            page.seen = before
        # live messages reach every page before the publishers stop
        for page in pages:
            offsets_until(page, "feed", page.seen[-1] + 20, page.seen)
        stop.set()
        for t in threads:
            t.join(60)
        last = 10 + sum(counts)
        for page in pages:
            seen = offsets_until(page, "feed", last, page.seen)
            assert seen == list(range(seen[0], last + 1)), (page.worker_pid, seen[:20])
    finally:
        stop.set()


def test_exclude_sender_across_workers_keeps_the_sender_contiguous(control_cluster):
    cluster = control_cluster()
    stop = threading.Event()
    try:
        ann = cluster.spread("ann", 1)
        bob = cluster.spread("bob", 2)
        pid_a, pid_b = cluster.pids
        sender, twin = ann[pid_a][0], ann[pid_b][0]
        others = [twin, bob[pid_a][0], bob[pid_b][0]]
        for page in [sender, *others]:
            page.ok("pubsub", "subscribe", {"channel": "room"})
        noisy = bob[pid_b][1]  # bob's publisher on the other worker
        sent = []

        def chatter():
            while not stop.is_set() and len(sent) < 500:
                noisy.ok("pubsub", "publish", {"channel": "room", "message": "bob"})
                sent.append(1)
        thread = threading.Thread(target=chatter, daemon=True)
        thread.start()
        sender.received.clear()
        mine = []
        for i in range(40):
            answer = sender.ok("pubsub", "publish", {"channel": "room", "message": f"ann{i}",
                                                     "excludeSender": True})
            mine.append(answer["offset"])
        stop.set()
        thread.join(60)
        last = len(sent) + 40
        # in arrival order: bob's messages and ann's answers, every offset once
        stream = []
        for env in sender.received:
            msg = env["message"]
            if msg.get("type") == "message":
                assert msg["message"] == "bob", msg
                stream.append(msg["offset"])
            elif msg.get("type") == "response" and isinstance(msg.get("data"), dict):
                stream.append(msg["data"]["offset"])
        while stream[-1] < last:
            stream.append(sender.recv()["message"]["offset"])
        assert stream == list(range(stream[0], last + 1)), stream
        assert set(mine) <= set(stream)
        for page in others:  # every message, ann's included, once and in order
            seen = offsets_until(page, "room", last, [0])[1:]
            assert seen == list(range(1, last + 1))
    finally:
        stop.set()

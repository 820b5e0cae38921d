"""Presence across gunicorn workers (issue #24 item 4's test): two workers on a
real redis-server, alice and bob each with a page on both workers, all in a
PubSub channel with metadata.  Every page, whichever worker holds it, and the
backend's control.presence / presenceStats asked over /backend of either
worker, answer the same entries and counts; an update made on one worker
reaches the watching pages on both; a SIGKILLed worker's entries leave the
other worker's presence (leave notifications, counts) within the cluster
expiry.  Chat's presence: the same counts from both workers.

The app (tests/cluster/control_app.py, conftest's ``control_cluster``) is a
user's app with PubSubService(presence=True) and ChatService(presence=True)
(unit tests: tests/unit/test_presence.py).
"""
from __future__ import annotations

import os
import signal
import time

EXPIRY = 3.0  # SNORKY_CLUSTER_EXPIRY of the test's workers


def by_client(entries):
    return sorted(entries, key=lambda e: e["client"])


def test_presence_is_the_same_on_both_workers_and_a_dead_workers_entries_leave(control_cluster):
    cluster = control_cluster(SNORKY_CLUSTER_HEARTBEAT="0.5", SNORKY_CLUSTER_EXPIRY=str(EXPIRY))
    alice, bob = ({pid: group[0] for pid, group in cluster.spread(name).items()} for name in ("alice", "bob"))
    pid_a, pid_b = cluster.pids
    pages = {(name, pid): p for name, group in (("alice", alice), ("bob", bob)) for pid, p in group.items()}
    ids = {}
    for (name, pid), page in pages.items():
        answer = page.ok("pubsub", "subscribe", {"channel": "room", "presence": True,
                                                "meta": {"name": name, "pid": pid}})
        ids[name, pid] = answer["client"]

    # every page, on either worker, answers the same four entries and counts
    expected = by_client([{"client": ids[k], "identity": k[0], "meta": {"name": k[0], "pid": k[1]}}
                          for k in pages])
    for page in pages.values():
        assert by_client(page.ok("pubsub", "presence", {"channel": "room"})["presence"]) == expected
        assert page.ok("pubsub", "presenceStats", {"channel": "room"}) == {"clients": 4, "users": 2}
    # and so does the backend, asked on either worker
    for pid in (pid_a, pid_b):
        assert by_client(cluster.control("presence", worker=pid, service="pubsub",
                                         channel="room")["presence"]) == expected
        assert cluster.control("presenceStats", worker=pid, service="pubsub", channel="room") == \
            {"clients": 4, "users": 2}

    # an update on worker A reaches the watching pages on both workers
    alice[pid_a].ok("pubsub", "updatePresence", {"channel": "room", "meta": {"status": "away"}})
    for key, page in pages.items():
        if key == ("alice", pid_a):
            continue
        change = page.wait_for(lambda m: m.get("type") == "presenceChange" and m["event"] == "update",
                               timeout=5)
        assert (change["client"], change["identity"], change["meta"]) == \
            (ids["alice", pid_a], "alice", {"status": "away"})
    for pid in (pid_a, pid_b):
        listed = cluster.control("presence", worker=pid, service="pubsub", channel="room")["presence"]
        assert {e["client"]: e["meta"] for e in listed}[ids["alice", pid_a]] == {"status": "away"}

    # Chat's presence: a member on each worker, the same counts from both
    alice[pid_a].ok("chat", "join", {"channel": "lobby", "meta": "phone"})
    bob[pid_b].ok("chat", "join", {"channel": "lobby", "meta": "laptop"})
    for pid in (pid_a, pid_b):
        assert cluster.control("presenceStats", worker=pid, service="chat", channel="lobby") == \
            {"clients": 2, "users": 2}
        assert sorted(e["meta"] for e in cluster.control("presence", worker=pid, service="chat",
                                                         channel="lobby")["presence"]) == ["laptop", "phone"]

    # worker B dies without a word: its entries leave A's presence within the expiry
    os.kill(pid_b, signal.SIGKILL)
    killed = time.monotonic()
    watcher = alice[pid_a]
    left = set()
    while left != {ids["alice", pid_b], ids["bob", pid_b]}:
        change = watcher.wait_for(lambda m: m.get("type") == "presenceChange" and m["event"] == "leave",
                                  timeout=EXPIRY + 10)
        left.add(change["client"])
    elapsed = time.monotonic() - killed
    assert elapsed <= EXPIRY + 2.0, f"entries left {elapsed:.1f} s after the kill (expiry {EXPIRY} s)"
    assert watcher.ok("pubsub", "presenceStats", {"channel": "room"}) == {"clients": 2, "users": 2}
    assert {e["client"] for e in watcher.ok("pubsub", "presence", {"channel": "room"})["presence"]} == \
        {ids["alice", pid_a], ids["bob", pid_a]}
    assert cluster.control("presenceStats", worker=pid_a, service="chat", channel="lobby") == \
        {"clients": 1, "users": 1}

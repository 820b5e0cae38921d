"""DataSync resumption across gunicorn workers (issue #25 item 4).

Two gunicorn workers share a real redis-server, without sticky sessions: a
page subscribed on worker A loses its connection, deltas are published, and
it comes back on worker B (connections are opened until the ``inspect``
service's pid says B). B takes the subscription over: the deltas it missed
arrive once, in order, then the answer ``recovered: true``, then live ones;
A no longer has it. Another identity gets on B exactly the answer an unknown
token gets; the token resumes once; Redis unreachable answers
``Resume state unavailable``.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import signal

import pytest
import redis
import requests

from support.servers import ServerProcess
from support.waiting import attempts, wait_for
from support.wsclient import SnorkyTestClient

_ids = itertools.count(1)


@pytest.fixture
def workers(redis_server):
    srv = ServerProcess(mode="gunicorn-gevent", app="tests.integration.testapp:app", workers=2,
                        env={"SNORKY_REDIS_URL": redis_server.url,
                             "SNORKY_DATASYNC_RESUME_WINDOW": "60"})
    clients: list[SnorkyTestClient] = []

    def connect(user: str | None, pid=None, other_than=None) -> tuple[SnorkyTestClient, int]:
        """A connection as ``user`` (None: anonymous) on the worker ``pid``, on
        any worker but ``other_than``, or on any."""
        for _ in attempts():  # the kernel spreads connections over the workers
            if user is None:
                c = SnorkyTestClient(srv.ws_url + "/ws")
            else:
                token = requests.get(f"{srv.url}/token/{user}", timeout=10).text
                c = SnorkyTestClient(srv.ws_url + "/ws-token?token=" + token)
            got = c.ok("inspect", "state")["pid"]
            if (pid is None or got == pid) and got != other_than:
                clients.append(c)
                return c, got
            c.close()
        raise AssertionError("connections never reached the worker wanted")

    srv.connect = connect
    srv.redis = redis.Redis.from_url(redis_server.url)
    # both workers listen before anything is authorized: an authorization
    # reaches the processes subscribed when it is published (Redis pub/sub
    # keeps nothing for a worker still booting)
    wait_for(lambda: srv.redis.pubsub_numsub("snorky:datasync:datasync")[0][1] == 2, 30,
             "both workers subscribed to the datasync topic")
    yield srv
    for c in clients:
        c.close()
    srv.stop()


def backend(srv, command, **params):
    return srv.backend_call("datasync_backend", command, **params)


def publish(srv, n: int) -> list[int]:
    ids = [next(_ids) for _ in range(n)]
    for i in ids:  # answered once delivered on every worker (the broker's barrier)
        backend(srv, "publishDeltas", deltas=[{"type": "insert", "model": "Todo",
                                               "data": {"id": i, "list": "a"}}])
    return ids


def deltas(c: SnorkyTestClient, n: int) -> list[dict]:
    return [c.wait_for(lambda m: m.get("type") == "delta") for _ in range(n)]


def acquire(c: SnorkyTestClient, token: str, **params) -> dict:
    return c.call("datasync", "acquireSubscription", {"token": token, **params})


def subscribed_then_dropped(srv):
    """alice acquires a subscription on worker A, gets two deltas, and her
    connection drops; returns (token, pid of A, seq and epoch of the last delta)."""
    token = backend(srv, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])
    alice, pid_a = srv.connect("alice")
    assert acquire(alice, token) == {"type": "response", "callId": 1 + 1, "data": None}
    publish(srv, 2)
    last = deltas(alice, 2)[-1]
    alice.close()
    key = "snorky:resume:datasync:" + hashlib.sha1(token.encode()).hexdigest()
    wait_for(lambda: srv.redis.exists(key), 20, "the detached subscription's state in Redis")
    return token, pid_a, last["seq"], last["epoch"]


def test_a_page_resumes_on_another_worker_with_exactly_what_it_missed(workers):
    srv = workers
    token, pid_a, seq, epoch = subscribed_then_dropped(srv)
    missed = publish(srv, 3)

    alice, pid_b = srv.connect("alice", other_than=pid_a)
    answer = acquire(alice, token, since=seq, epoch=epoch)
    got = [env["message"] for env in alice.notifications]
    alice.notifications.clear()
    assert answer["type"] == "response" and answer["data"]["recovered"] is True, answer
    epoch_b = answer["data"]["epoch"]
    assert epoch_b != epoch
    # the missed deltas, once, in order, before the answer, numbered in B's epoch
    assert [m["delta"]["data"]["id"] for m in got] == missed
    assert {m["epoch"] for m in got} == {epoch_b}
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs))

    live = publish(srv, 2)
    after = deltas(alice, 2)
    assert [m["delta"]["data"]["id"] for m in after] == live
    assert [m["seq"] for m in after] == sorted(set(m["seq"] for m in after))
    assert after[0]["seq"] > seqs[-1] and {m["epoch"] for m in after} == {epoch_b}
    # the token resumed once: neither worker takes it again (A handed it over)
    for pid in (pid_a, pid_b):
        again, _ = srv.connect("alice", pid=pid)
        answer = acquire(again, token, since=seq, epoch=epoch)
        assert answer.get("data", {}).get("recovered") is not True, (pid, answer)
    # and only B delivers to it: one more delta reaches alice once
    (last,) = publish(srv, 1)
    assert [m["delta"]["data"]["id"] for m in deltas(alice, 1)] == [last]
    assert alice.answers_next("inspect", "state")["type"] == "response"


def test_another_identity_cannot_resume_it_on_another_worker(workers):
    srv = workers
    token, pid_a, seq, epoch = subscribed_then_dropped(srv)
    missed = publish(srv, 1)
    for who in (None, "bob"):
        thief, _ = srv.connect(who, other_than=pid_a)
        unknown = acquire(thief, "0" * 32, since=seq, epoch=epoch)
        answer = acquire(thief, token, since=seq, epoch=epoch)
        assert answer == {**unknown, "callId": answer["callId"]}, (who, answer)
        assert answer["data"]["recovered"] is False
        assert thief.answers_next("inspect", "state")["type"] == "response"  # no delta of alice's
    # alice still can, with what she missed
    alice, _ = srv.connect("alice", other_than=pid_a)
    answer = acquire(alice, token, since=seq, epoch=epoch)
    assert answer["data"]["recovered"] is True, answer
    assert [env["message"]["delta"]["data"]["id"] for env in alice.notifications] == missed


def test_redis_unreachable_is_an_error_answer(workers, redis_server):
    srv = workers
    token, pid_a, seq, epoch = subscribed_then_dropped(srv)
    alice, _ = srv.connect("alice", other_than=pid_a)
    redis_server.kill()
    answer = acquire(alice, token, since=seq, epoch=epoch)
    assert answer == {"type": "error", "callId": answer["callId"], "message": "Resume state unavailable"}


def test_the_worker_that_kept_it_died_it_is_not_recovered(workers):
    """Worker A killed while the subscription is detached there: nobody can
    hand over what it kept, and the page is told so (it reloads)."""
    srv = workers
    token, pid_a, seq, epoch = subscribed_then_dropped(srv)
    os.kill(pid_a, signal.SIGKILL)
    publish(srv, 1)
    alice, _ = srv.connect("alice", other_than=pid_a)
    answer = acquire(alice, token, since=seq, epoch=epoch)
    assert answer["type"] == "response" and answer["data"]["recovered"] is False, answer
    assert alice.answers_next("inspect", "state")["type"] == "response"  # and no delta

"""The delivery guarantee under chaos (issue #25's proof): per channel, in
order, exactly once — or an explicit gap signal — across workers, failovers
and retries.

Two gunicorn workers (gevent) of the default app with PubSub history, on a
real redis-server reached through a TCP relay (so one worker's listener can
be frozen).  On each of three channels: publishers that behave like a real
client (numbered messages, ``idempotencyKey`` = their number, retried with
the same key on an error, a timeout or a lost connection, after reconnecting
to whichever worker the kernel gives; now and then the connection is dropped
right after sending, the answer never read), and subscribers on both workers
that behave like snorky.js (a message that does not follow the last, or a
``gap`` notification, makes them ask again with ``since`` in place; a lost
connection makes them reconnect and subscribe with ``since``).  While they
run, in sequence, each step paced by the messages the subscribers get: one
worker's Redis listener frozen (it notices it is deaf and reconnects), Redis
killed -9 and started again empty on the same port, one worker SIGKILLed
(gunicorn starts another).

At the end, for every subscriber: every publish acknowledged to a publisher
is in its stream exactly once, at the acknowledged offset — unless an answer
``recovered: false`` told it that it missed that stretch; no key twice (the
retries); what the server sent it never repeats an offset nor jumps without
telling it (``gap``).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections import Counter

import pytest
import websocket

from support.redis_relay import RedisRelay
from support.servers import ServerProcess
from support.waiting import wait_for

from .conftest import RedisServer

CHANNELS = ("c0", "c1", "c2")
SUBSCRIBERS_PER_WORKER = 2          # per channel
STEP = 60                           # messages each subscriber gets between two chaos steps
DROP_EVERY = 9                      # every 9th publish: the connection dropped right after sending
ENV = {"SNORKY_PUBSUB_HISTORY_SIZE": "10000",
       "SNORKY_CLUSTER_HEARTBEAT": "0.2", "SNORKY_CLUSTER_EXPIRY": "1.5"}


# -- clients that behave like real ones ------------------------------------------------------

class Conn:
    """One WebSocket connection speaking the Snorky envelope, without blocking calls."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=5)
        self.ids = itertools.count(1)

    def send(self, service: str, command: str, params: dict) -> int:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"service": service, "message": {"command": command, "params": params,
                                                                  "callId": call_id}}))
        return call_id

    def recv(self, timeout: float) -> dict | None:
        """The next envelope's message; None after ``timeout`` s without one."""
        self.ws.settimeout(timeout)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        if raw == "":
            raise websocket.WebSocketConnectionClosedException("closed by the server")
        return json.loads(raw)["message"]

    def call(self, service: str, command: str, params: dict, timeout: float = 5) -> dict:
        call_id = self.send(service, command, params)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is not None and msg.get("callId") == call_id:
                return msg
        raise TimeoutError(f"no answer to {command}")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


LOST = (OSError, websocket.WebSocketException, TimeoutError)


class Publisher(threading.Thread):
    """Publishes ``{"p": name, "n": n}`` for n = 0, 1, ... with idempotencyKey
    ``n`` (a page's keys are scoped per publisher and channel; anonymous
    pages share a scope, so the name is in it) until acknowledged: on an
    error answer, a timeout or a lost connection it sends the same again,
    after reconnecting when the connection is gone."""

    def __init__(self, url: str, name: str, channel: str, stop: threading.Event):
        super().__init__(daemon=True, name=name)
        self.url, self.name_, self.channel, self.stop = url, name, channel, stop
        self.acked: dict[int, tuple[str, int]] = {}   # n -> (epoch, offset) it was answered
        self.attempts = Counter()                       # n -> sends
        self.sent_to: dict[int, list[list]] = {}      # n -> [worker pid, sent at, lost at] per send
        self.pid = 0
        self.errors: Counter = Counter()
        self.conn: Conn | None = None

    def connect(self):
        while not self.stop.is_set():
            try:
                conn = Conn(self.url)
                self.pid = conn.call("worker", "pid", {})["data"]
                self.conn = conn
                return
            except LOST:
                self.errors["connect"] += 1
                self.stop.wait(0.05)  # a client's reconnection backoff

    def publish(self, n: int) -> bool:
        if self.conn is None:
            self.connect()
            if self.conn is None:
                return False
        params = {"channel": self.channel, "message": {"p": self.name_, "n": n},
                  "idempotencyKey": f"{self.name_}:{n}", "excludeSender": True}
        self.attempts[n] += 1
        send = [self.pid, time.monotonic(), None]
        self.sent_to.setdefault(n, []).append(send)
        try:
            if n % DROP_EVERY == DROP_EVERY - 1 and self.attempts[n] == 1:
                self.conn.send("pubsub", "publish", params)   # sent, and the connection lost
                raise websocket.WebSocketConnectionClosedException("dropped after sending")
            answer = self.conn.call("pubsub", "publish", params, timeout=8)
        except LOST as exc:
            send[2] = time.monotonic()
            self.errors[type(exc).__name__] += 1
            self.conn.close()
            self.conn = None
            return False
        if answer["type"] != "response":
            self.errors[answer.get("message") or answer["type"]] += 1
            self.stop.wait(0.05)  # History/Idempotency unavailable: Redis is away; retry soon
            return False
        self.acked[n] = (answer["data"]["epoch"], answer["data"]["offset"])
        return True

    def run(self):
        for n in itertools.count():
            while not self.publish(n):
                if self.stop.is_set():
                    return
            if self.stop.wait(0.01):  # a steady rate (~60/s)
                return


class Subscriber(threading.Thread):
    """A subscriber of ``channel`` doing what snorky.js does: it keeps its
    position (epoch, offset); a message that follows it is taken, one at or
    before it dropped (counted: the server repeated itself), one after a
    jump (or of another epoch not starting at 1) or a ``gap`` notification
    makes it ask again with ``since`` in place; the answer moves it on
    (``recovered: true``) or to where the server is (``false``: the missed
    stretch is noted).  A lost connection: it reconnects (whichever worker)
    and subscribes with ``since``."""

    def __init__(self, url: str, channel: str, stop: threading.Event, conn: Conn, answer: dict, pid: int):
        super().__init__(daemon=True)
        self.url, self.channel, self.stop, self.conn = url, channel, stop, conn
        self.pid = pid
        self.pos = self.origin = (answer["epoch"], answer["offset"])
        self.taken: list[tuple[str, int, str, int]] = []     # (epoch, offset, publisher, n)
        self.missed: list[tuple[tuple, tuple]] = []          # recovered: false, from -> to
        self.repeated: list = []                             # frames at or before the position
        self.jumps: list = []                                # frames after an unannounced jump
        self.gaps = 0                                        # gap notifications
        self.recoveries = Counter()
        self.reconnects = 0
        self.recovering: int | None = None                   # callId of the pending since
        self.since: tuple | None = None                      # the position it asked from
        self.subscribed = True                               # False: a reconnection's subscribe pending
        self.cond = threading.Condition()
        self.start()

    def keys(self) -> set:
        with self.cond:
            return {(p, n) for _, _, p, n in self.taken}

    def ask_since(self):
        if self.recovering is None:
            self.since = self.pos
            self.recovering = self.conn.send("pubsub", "subscribe",
                                              {"channel": self.channel,
                                               "since": {"epoch": self.pos[0], "offset": self.pos[1]}})

    def settle(self, answer: dict):
        data = answer.get("data") or {}
        if answer["type"] != "response":           # History unavailable: asked again on the next one
            self.recoveries["error"] += 1
            return
        to = (data["epoch"], data["offset"])
        if data["recovered"]:
            self.recoveries["true"] += 1
            if to[0] != self.pos[0] or to[1] > self.pos[1]:
                with self.cond:  # forward only; the replay before it moved the position already
                    self.pos = to if to[0] != self.pos[0] else max(self.pos, to)
        else:
            self.recoveries["false"] += 1
            with self.cond:
                self.missed.append((self.pos, to))
                self.pos = to

    def on_message(self, msg: dict):
        epoch, offset = msg["epoch"], msg["offset"]
        cur_epoch, cur = self.pos
        if epoch == cur_epoch and offset <= cur:
            # the replay of an in-place recovery starts after the position it asked from
            if self.recovering is None or self.since is None or epoch != self.since[0] \
                    or offset <= self.since[1]:
                self.repeated.append((epoch, offset, cur))
            return
        if (epoch == cur_epoch and offset == cur + 1) or (epoch != cur_epoch and offset == 1):
            with self.cond:
                self.pos = (epoch, offset)
                self.taken.append((epoch, offset, msg["message"]["p"], msg["message"]["n"]))
                self.cond.notify_all()
            return
        if self.recovering is None:  # a jump the server did not announce
            self.jumps.append(((cur_epoch, cur), (epoch, offset)))
        self.ask_since()

    def reconnect(self):
        self.conn.close()
        self.reconnects += 1
        self.recovering = None
        self.subscribed = False
        while not self.stop.is_set():
            try:
                conn = Conn(self.url)
                self.pid = conn.call("worker", "pid", {})["data"]
                self.conn = conn
                self.ask_since()  # on a new connection: subscribe with since
                return
            except LOST:
                self.stop.wait(0.05)  # a client's reconnection backoff

    def run(self):
        while not self.stop.is_set():
            try:
                msg = self.conn.recv(0.5)
            except LOST:
                self.reconnect()
                continue
            if msg is None:
                continue
            if msg.get("type") in ("response", "error"):
                if msg.get("callId") == self.recovering:
                    self.recovering = None
                    if msg["type"] == "response":
                        self.subscribed = True
                    self.settle(msg)
                    if not self.subscribed:  # History unavailable: Redis away; ask again soon
                        self.stop.wait(0.1)
                        self.ask_since()
            elif msg.get("channel") != self.channel:
                continue
            elif msg.get("type") == "gap":
                self.gaps += 1
                self.ask_since()
            elif msg.get("type") == "message":
                self.on_message(msg)
        self.conn.close()

    def excused(self, epoch: str, offset: int) -> bool:
        """Did an answer ``recovered: false`` tell it that it missed (epoch, offset)?"""
        seen = {self.origin[0]} | {e for e, _, _, _ in self.taken} | \
            {e for window in self.missed for e, _ in window}
        for (e0, o0), (e1, o1) in self.missed:
            if (epoch == e0 and offset > o0) or (epoch == e1 and offset <= o1):
                return True
            if e0 != e1 and epoch not in seen:
                return True  # an epoch it never was in, skipped by that answer
        return False


# -- the run ---------------------------------------------------------------------------------

def worker_pids(master: int) -> set[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(p) for p in f.read().split()}


@pytest.fixture
def delivery_cluster():
    redis_server = RedisServer().start()
    relay = RedisRelay(redis_server.port)
    srv = ServerProcess(mode="gunicorn-gevent", app="tests.cluster.delivery_app:app", workers=2,
                        env={"SNORKY_REDIS_URL": f"redis://127.0.0.1:{relay.port}/0", **ENV})
    state = {"redis": redis_server}
    try:
        yield srv, relay, state
    finally:
        srv.stop()
        relay.close()
        state["redis"].kill()


def test_every_acknowledged_publish_reaches_every_subscriber_once_or_a_gap_is_signalled(delivery_cluster):
    srv, relay, state = delivery_cluster
    url = srv.ws_url + "/ws"
    stop, stop_publishing = threading.Event(), threading.Event()
    wait_for(lambda: len(worker_pids(srv.proc.pid)) == 2, 20, "two workers")
    started = time.monotonic()

    # subscribers on both workers, publishers starting on both
    subs: list[Subscriber] = []
    parked: dict[int, list[Conn]] = {}
    def on_worker(want: int) -> tuple[Conn, int]:
        for _ in range(200):   # the kernel spreads connections over the workers
            c = Conn(url)
            pid = c.call("worker", "pid", {})["data"]
            if pid == want or want == 0:
                return c, pid
            parked.setdefault(pid, []).append(c)
        raise AssertionError(f"no connection reached worker {want}")
    pids = sorted(worker_pids(srv.proc.pid))
    for pid in pids:
        for channel in CHANNELS:
            for _ in range(SUBSCRIBERS_PER_WORKER):
                c, got = on_worker(pid)
                answer = c.call("pubsub", "subscribe", {"channel": channel})
                assert answer["type"] == "response", answer
                subs.append(Subscriber(url, channel, stop, c, answer["data"], got))
    for conns in parked.values():
        for c in conns:
            c.close()
    pubs = [Publisher(url, f"p{i}-{channel}", channel, stop_publishing) for channel in CHANNELS for i in range(2)]
    for p in pubs:
        p.start()

    steps = []

    def progress(what: str):
        """Every subscriber gets STEP more messages (the system works again)."""
        steps.append((what, round(time.monotonic() - started, 1)))
        marks = [len(s.taken) for s in subs]
        wait_for(lambda: all(len(s.taken) >= m + STEP for s, m in zip(subs, marks)), 30,
                 f"{STEP} more messages for every subscriber {what} "
                 f"(got {[len(s.taken) - m for s, m in zip(subs, marks)]})")

    deaf, victim = pids
    try:
        progress("at the start")
        # (1) a worker's Redis listener frozen: it hears nothing, notices, reconnects
        assert relay.freeze_listener(deaf) >= 1, "the worker's listener not found in the relay"
        wait_for(lambda: relay.listeners(deaf), 20, "the frozen worker's new listener")
        progress("after the frozen listener")
        # (2) Redis killed -9 and started again, empty, on the same port
        state["redis"].kill()
        state["redis"] = RedisServer(state["redis"].port).start()
        progress("after the Redis restart")
        # (3) a worker SIGKILLed; gunicorn starts another
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(srv.proc.pid) - {victim}) == 2, 20, "gunicorn's new worker")
        progress("after the worker was killed")
    finally:
        stop_publishing.set()
        for t in pubs:
            t.join(15)
    acked = {ch: {(p.name_, n): pos for p in pubs if p.channel == ch for n, pos in p.acked.items()}
             for ch in CHANNELS}

    def arrived():
        for s in subs:
            keys = s.keys()
            if any(k not in keys and not s.excused(*pos) for k, pos in acked[s.channel].items()):
                return False
        return True
    try:  # the last ones on their way; what never comes is named below
        wait_for(arrived, 20, "every acknowledged publish at every subscriber")
    except AssertionError:
        pass
    finally:
        stop.set()
        for s in subs:
            s.join(15)
    elapsed = time.monotonic() - started

    # every acknowledged publish in every subscriber's stream of its channel, once, where it was
    # acknowledged — unless a recovered: false covers it
    retried = sum(1 for p in pubs for n, c in p.attempts.items() if c > 1)
    print(f"\n{elapsed:.1f} s; {sum(len(p.acked) for p in pubs)} publishes acknowledged, {retried} after "
          f"retries; errors {dict(sum((p.errors for p in pubs), Counter()))}")
    print("steps (s from the start):", steps)
    print("channel taken missing twice repeated jumps gaps recoveries reconnects")
    failures = []
    limits: Counter = Counter()  # duplicates of the documented limits (docs/history.md)
    for s in subs:
        got = Counter((p, n) for _, _, p, n in s.taken)
        where: dict = {}
        for e, o, p, n in s.taken:
            where.setdefault((p, n), []).append((e, o))
        twice = {}
        for k in (k for k, c in got.items() if c > 1):
            (e1, _), (e2, _) = where[k][:2]
            # a worker killed between publishing and recording is no excuse: with history the
            # append records the key's answer in the same script (tests/cluster/kill_app.py's test)
            if e1 != e2 and any(a[0] == e1 != b[0] for a, b in s.missed):
                limits["Redis lost the key with the history"] += 1   # after recovered: false
            else:
                twice[k] = where[k]
        missing = [k for k, pos in acked[s.channel].items() if k not in got and not s.excused(*pos)]
        misplaced = [(k, pos, where[k]) for k, pos in acked[s.channel].items()  # (a retry after
                     if k in where and pos not in where[k] and not s.excused(*pos)]  # Redis lost it)
        print(s.channel, len(s.taken), len(missing), len(twice), len(s.repeated), len(s.jumps), s.gaps,
              dict(s.recoveries), s.reconnects)
        if twice:
            failures.append(f"delivered twice (retries) on {s.channel}: {list(twice.items())[:3]}; "
                            f"acknowledged at {[acked[s.channel].get(k) for k in list(twice)[:3]]}; "
                            f"missed stretches {s.missed}")
        if missing:
            failures.append(f"{len(missing)} acknowledged publishes never reached a subscriber of "
                            f"{s.channel}, no gap signalled: {missing[:5]}; missed stretches {s.missed}")
        if misplaced:
            failures.append(f"delivered at another offset than acknowledged: {misplaced[:3]}")
        if s.repeated:
            failures.append(f"the server sent offsets again on {s.channel}: {s.repeated[:5]}")
        if s.jumps:
            failures.append(f"the server skipped offsets on {s.channel} without a gap notification: "
                            f"{s.jumps[:5]}")
        epochs: dict[str, list[int]] = {}
        for e, o, _, _ in s.taken:
            epochs.setdefault(e, []).append(o)
        if any(b != a + 1 for offsets in epochs.values() for a, b in zip(offsets, offsets[1:])
               if not s.missed):
            failures.append(f"offsets not contiguous within an epoch on {s.channel}")
    print("retries delivered twice within the documented limits:", dict(limits))
    assert not failures, "\n".join(failures[:6])
    assert retried >= len(pubs), "the publishers' retries were not exercised"
    assert any(s.reconnects for s in subs), "no subscriber had to reconnect"

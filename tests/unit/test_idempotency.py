"""The dedupe store of idempotent publishing (snorky_sync.services.idempotency):
in process (bounded, expiring) and in a real redis-server shared by two
stores, as two workers' would be."""
from __future__ import annotations

import time

import gevent
import pytest
import redis
from cluster.conftest import RedisServer
from support.waiting import wait_for

from snorky_sync.brokers.base import BrokerUnavailable
from snorky_sync.metrics import counters
from snorky_sync.services.base import RPCError
from snorky_sync.services.idempotency import KEY_PREFIX, MAX_KEY_SIZE, Idempotency, window


class Owner:
    """What the store reads of its service: a name and a broker."""

    def __init__(self, broker=None, name="pubsub"):
        self.name = name
        self.broker = broker


class ScriptBroker:
    """The two things the store asks of a distributed broker (RedisBroker's
    ``distributed`` and ``script``), on a plain redis-py client: RedisBroker
    itself needs gevent's monkey-patching, which unit tests don't do."""

    distributed = True

    def __init__(self, port):
        self.client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def script(self, source):
        registered = self.client.register_script(source)

        def run(keys, args, place=None):
            try:
                return registered(keys=keys, args=args)
            except redis.RedisError as exc:
                raise BrokerUnavailable(str(exc)) from exc
        return run


class Counter:
    def __init__(self, answers=None):
        self.calls = 0
        self.answers = answers

    def __call__(self):
        self.calls += 1
        return {"offset": self.calls} if self.answers is None else self.answers


@pytest.fixture(scope="module")
def redis_port():
    server = RedisServer().start()
    yield server.port
    server.kill()


@pytest.fixture(params=["local", "redis"])
def stores(request):
    """Two stores of one service: in process, one table (a worker's); with
    Redis, one per 'worker', sharing the keys."""
    if request.param == "local":
        one = Idempotency(Owner(), window=60)
        return one, one
    port = request.getfixturevalue("redis_port")
    redis.Redis(port=port).flushall()
    return (Idempotency(Owner(ScriptBroker(port)), window=60),
            Idempotency(Owner(ScriptBroker(port)), window=60))


def test_the_same_key_runs_once_and_answers_as_the_first(stores):
    a, b = stores
    run = Counter()
    assert a.once(b"chan", "k1", run) == {"offset": 1}
    assert b.once(b"chan", "k1", run) == {"offset": 1}          # the other worker: the same answer
    assert a.once(b"chan", "k1", run) == {"offset": 1}
    assert run.calls == 1
    assert a.once(b"chan", "k2", run) == {"offset": 2}          # another key
    assert b.once(b"other", "k1", run) == {"offset": 3}         # another scope (channel, publisher)
    assert a.once(b"chan", None, run) == {"offset": 4}          # no key: no dedupe
    assert a.once(b"chan", None, run) == {"offset": 5}
    assert run.calls == 5


def test_a_failed_call_records_nothing(stores):
    a, b = stores

    def refused():
        raise RPCError("Not authorized")
    with pytest.raises(RPCError, match="Not authorized"):
        a.once(b"chan", "k", refused)
    run = Counter()
    assert b.once(b"chan", "k", run) == {"offset": 1}           # the retry runs
    assert run.calls == 1


def test_a_duplicate_waits_for_the_running_call(stores):
    a, b = stores
    started, release = gevent.event.Event(), gevent.event.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(10)
        return "first"
    first = gevent.spawn(a.once, b"chan", "k", slow)
    assert started.wait(10)
    waits = counters["idempotent_waits"]
    second = gevent.spawn(b.once, b"chan", "k", lambda: calls.append(2) or "second")
    wait_for(lambda: counters["idempotent_waits"] > waits, 10, "the duplicate finding the running call",
             sleep=gevent.sleep)
    assert not second.ready()    # it waits for the first one's answer
    release.set()
    assert first.get(timeout=10) == "first"
    assert second.get(timeout=10) == "first"
    assert calls == [1]


def test_over_long_and_wrong_keys_are_refused(stores):
    a, _ = stores
    run = Counter()
    assert a.once(b"c", "é" * (MAX_KEY_SIZE // 2), run) == {"offset": 1}     # 256 bytes of UTF-8
    with pytest.raises(RPCError, match="Idempotency key too long"):
        a.once(b"c", "é" * (MAX_KEY_SIZE // 2) + "x", run)
    for wrong in ("", 5, ["k"], {"k": 1}):
        with pytest.raises(RPCError, match="Invalid params"):
            a.once(b"c", wrong, run)
    assert run.calls == 1


def test_the_window_ends():
    store = Idempotency(Owner(), window=0.2)
    run = Counter()
    deadline = time.monotonic() + 0.15       # taken before the key's window starts
    store.once(b"c", "k", run)
    while time.monotonic() < deadline:
        assert store.once(b"c", "k", run) == {"offset": 1}
    gevent.sleep(0.1)
    assert store.once(b"c", "k", run) == {"offset": 2}          # remembered no longer


def test_the_local_table_is_bounded():
    store = Idempotency(Owner(), window=60, max_local_keys=100)
    run = Counter()
    for i in range(1000):
        store.once(b"c", f"k{i}", run)
    assert len(store.local) <= 101
    assert store.once(b"c", "k999", run) == {"offset": 1000}    # the newest are kept


def test_redis_keys_hold_no_client_text_and_expire(redis_port):
    r = redis.Redis(port=redis_port)
    r.flushall()
    store = Idempotency(Owner(ScriptBroker(redis_port), name="pubsub"), window=30)
    store.once(b'"room secret"', "my key secret", lambda: None)
    [key] = r.keys("*")
    assert key.startswith(KEY_PREFIX.encode() + b"pubsub:") and b"secret" not in key
    assert 29_000 < r.pttl(key) <= 30_000
    assert r.get(key) == b"anull"


def test_redis_unreachable_refuses_and_runs_nothing():
    store = Idempotency(Owner(ScriptBroker(1)), window=30)   # nothing listens on port 1
    run = Counter()
    with pytest.raises(RPCError, match="Idempotency unavailable"):
        store.once(b"c", "k", run)
    assert run.calls == 0


def test_window_is_checked():
    assert window("PubSubService", 120) == 120.0
    with pytest.raises(ValueError, match=r"PubSubService\(idempotency_window=...\) is seconds > 0"):
        window("PubSubService", 0)
    with pytest.raises(TypeError, match="idempotency_window"):
        window("PubSubService", "2m")

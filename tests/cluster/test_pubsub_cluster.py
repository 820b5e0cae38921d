"""PubSub across processes through a real Redis, including a Redis restart."""
from .conftest import RedisServer, wait_broker


def test_publish_on_one_process_reaches_subscribers_on_every_process_once_in_order(cluster, connect):
    a, b = cluster(2)
    subs = [connect(a), connect(b),
            connect(b)]
    for c in subs:
        c.ok("pubsub", "subscribe", {"channel": {"room": 1}})
    pub = connect(a)
    for i in range(200):
        pub.send("pubsub", {"command": "publish", "params": {"channel": {"room": 1}, "message": i}})
    for c in subs:
        got = [c.recv()["message"] for _ in range(200)]
        assert [m["message"] for m in got] == list(range(200))
        assert all(m == {"type": "message", "channel": {"room": 1}, "message": m["message"]} for m in got)
        c.expect_silence(0.3)  # exactly once: nothing more follows


def test_backend_publish_on_any_process_reaches_every_process(cluster, connect):
    a, b = cluster(2)
    ca, cb = connect(a), connect(b)
    for c in (ca, cb):
        c.ok("pubsub", "subscribe", {"channel": "news"})
    r = b.post_backend("pubsub_backend", {"command": "publish", "params": {"channel": "news", "message": "hi"}, "callId": 1})
    assert r.json()["message"] == {"type": "response", "callId": 1, "data": None}
    for c in (ca, cb):
        assert c.recv()["message"] == {"type": "message", "channel": "news", "message": "hi"}


def test_publisher_sees_its_own_message_before_its_reply_in_cluster_mode(cluster, connect):
    a, _ = cluster(2)
    c = connect(a)
    c.ok("pubsub", "subscribe", {"channel": "self"})
    c.send("pubsub", {"command": "publish", "params": {"channel": "self", "message": 1}, "callId": 9})
    assert c.recv()["message"]["type"] == "message"
    assert c.recv()["message"] == {"type": "response", "callId": 9, "data": None}
    c.expect_silence(0.3)  # its own publish does not come back through Redis


def test_redis_restart_workers_keep_serving_reconnect_and_resubscribe(cluster, redis_server, connect):
    a, b = cluster(2)
    ca, cb = connect(a), connect(b)
    for c in (ca, cb):
        c.ok("pubsub", "subscribe", {"channel": "r"})
    redis_server.kill()
    for srv in (a, b):
        health = wait_broker(srv, "disconnected")
        assert health["status"] == "degraded"
    # local work goes on while Redis is away
    pa = connect(a)
    pa.ok("pubsub", "publish", {"channel": "r", "message": "local only"})
    assert ca.recv()["message"]["message"] == "local only"
    cb.expect_silence(0.3)
    # Redis comes back on the same port: both reconnect and re-subscribe
    again = RedisServer(redis_server.port).start()
    try:
        for srv in (a, b):
            wait_broker(srv, "connected")
        pa.ok("pubsub", "publish", {"channel": "r", "message": "everywhere again"})
        assert ca.recv()["message"]["message"] == "everywhere again"
        assert cb.recv()["message"]["message"] == "everywhere again"
        assert "Redis broker lost its connection" in a.log()
    finally:
        again.kill()

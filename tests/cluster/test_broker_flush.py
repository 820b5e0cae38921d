"""RedisBroker.flush() waits for the publishes queued before the call, not
for its sender to go idle: under a steady stream of publishes from other
greenlets (other pages publishing) the sender never does, and every call
that flushes before answering (a DataSync authorization, a Messaging name,
a Chat join, a control command) waited the whole timeout (5 s)."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys, gevent, redis
    from snorky_sync.brokers.redis import RedisBroker
    url = sys.argv[1]
    broker = RedisBroker(url)
    broker.start()
    assert broker.connected_event.wait(20)
    heard = redis.Redis.from_url(url).pubsub()
    heard.subscribe(broker.channel_name("marker"))
    assert heard.get_message(timeout=5)["type"] == "subscribe"
    stop = gevent.event.Event()

    def stream():  # another page publishing, as fast as it may
        while not stop.is_set():
            broker.publish("stream", b"x" * 100)
            gevent.sleep(0)
    streams = [gevent.spawn(stream) for _ in range(4)]
    gevent.sleep(0.2)
    broker.publish("marker", b"m")
    flushed = broker.flush(timeout=60)
    running = not stop.is_set() and all(not s.dead for s in streams)
    stop.set()
    got = heard.get_message(timeout=10)
    print("flushed", flushed, "running", running, "marker", got["data"] == broker.origin + b"m", flush=True)
""")


def test_flush_returns_once_what_was_queued_before_it_is_sent_under_a_steady_stream(redis_server):
    out = subprocess.run([sys.executable, "-c", SCRIPT, redis_server.url], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.split() == ["flushed", "True", "running", "True", "marker", "True"], \
        out.stdout + out.stderr[-3000:]

"""A RedisBroker in its first moments (a worker just started: its pages come
back at once): barrier() and confirm() wait for the first connection instead
of answering False at once. A DataSync token authorized on another worker was
'No such subscription' on a worker whose broker was still connecting (CI:
tests/cluster/test_datasync_resume_workers.py), a subscribe to a history
channel 'History unavailable'."""
import subprocess
import sys
import textwrap

from support.servers import free_port

from .conftest import RedisServer

SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys, gevent
    from snorky_sync.brokers.redis import RedisBroker
    broker = RedisBroker(sys.argv[1])
    broker.subscribe("t", lambda data: None)
    broker.start()
    barrier = gevent.spawn(broker.barrier, 20)
    confirm = gevent.spawn(broker.confirm, "t", 20)
    gevent.sleep(0)
    print("waiting", broker.state, flush=True)
    sys.stdin.readline()  # the test starts Redis, then says go
    print("barrier", barrier.get(timeout=30), "confirm", confirm.get(timeout=30), flush=True)
""")


def test_barrier_and_confirm_wait_for_the_first_connection():
    redis = RedisServer(port=free_port())  # not running yet
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, redis.url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["waiting", "disconnected"]
        redis.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["barrier", "True", "confirm", "True"]
    finally:
        proc.kill()
        proc.wait(10)
        redis.kill()

"""A cursor handle two processes gave out while Redis was away is replaced
once it is back, and everybody agrees (Cursors routed per document:
services/cursors_routing.py).  Two CursorsService 'processes', each with its
own RedisBroker, in one gevent subprocess on a real redis-server killed and
restarted empty (what tests/unit/test_replica.py checked over an in-memory
broker while Cursors was a process-wide replica)."""
import json
import subprocess
import sys
import textwrap

from .conftest import RedisServer

SCRIPT = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import json, sys
    sys.path.insert(0, "tests")
    from snorky_sync.brokers.redis import RedisBroker
    from snorky_sync.services.cursors import CursorsService
    from support.fakes import FakeClient, rpc
    from support.waiting import wait_for

    def say(*words):
        print(*words, flush=True)

    def step():
        return sys.stdin.readline().strip()

    a, b = CursorsService("cursors"), CursorsService("cursors")
    for svc in (a, b):
        broker = RedisBroker(sys.argv[1], max_backoff=0.2, heartbeat_interval=0.25, peer_expiry=5)
        svc.use_broker(broker)
        broker.start()
    wait_for(lambda: a.broker.state == b.broker.state == "connected", 10, "connected")
    ann, ben, watcher, bwatcher = FakeClient("ann"), FakeClient("ben"), FakeClient("w"), FakeClient("bw")
    for svc, c in ((a, ann), (b, ben), (a, watcher), (b, bwatcher)):
        rpc(svc, c, "join", {"document": "d"})
    say("ready")
    assert step() == "down"
    wait_for(lambda: a.broker.state != "connected" and b.broker.state != "connected", 10, "down")
    for svc in (a, b):  # both pick the same handle while neither can ask Redis
        svc._new_handle = lambda doc, key=None: 7
    h1 = rpc(a, ann, "createCursor", {"privateHandle": 0, "document": "d", "position": 1, "status": None})["data"]
    h2 = rpc(b, ben, "createCursor", {"privateHandle": 0, "document": "d", "position": 2, "status": None})["data"]
    for svc in (a, b):
        del svc._new_handle
    say("created", h1, h2)
    views = {"w": {}, "bw": {}}

    def view(name, client):
        for m in client.pop_messages():
            if m["type"] in ("cursorAdded", "cursorUpdated"):
                views[name][m["cursor"]["publicHandle"]] = m["cursor"]["owner"]
            elif m["type"] == "cursorRemoved":
                views[name].pop(m["cursor"]["publicHandle"], None)
        return views[name]

    def agreed():
        w, bw = view("w", watcher), view("bw", bwatcher)
        return w == bw and sorted(w.values()) == ["ann", "ben"] and len(w) == 2
    assert step() == "up"
    wait_for(agreed, 20, "both watchers see both cursors under different handles")
    late = [sorted((c["publicHandle"], c["owner"]) for c in rpc(svc, FakeClient("late"), "join",
                                                                  {"document": "d"})["data"]["cursors"])
            for svc in (a, b)]
    say(json.dumps({"watchers": sorted(views["w"].items()), "late": late}))
""")


def test_a_handle_given_out_twice_during_an_outage_is_replaced():
    redis = RedisServer().start()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, redis.url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)

    def tell(word):
        proc.stdin.write(word + "\n")
        proc.stdin.flush()
    try:
        assert proc.stdout.readline().split() == ["ready"]
        redis.kill()
        tell("down")
        assert proc.stdout.readline().split() == ["created", "7", "7"]
        redis = RedisServer(port=redis.port).start()  # back, empty
        tell("up")
        line = proc.stdout.readline()
        assert line, "the script failed (its stderr above)"
        seen = json.loads(line)
        (h1, o1), (h2, o2) = seen["watchers"]
        assert h1 != h2 and sorted([o1, o2]) == ["ann", "ben"]
        # a page joining on either process afterwards gets the same two
        assert seen["late"] == [[[h1, o1], [h2, o2]]] * 2
    finally:
        proc.kill()
        proc.wait(10)
        redis.kill()

"""PubSub history across processes with a real Redis: offsets assigned once for
the cluster, recovery on another process, a new epoch after a Redis restart."""
import random
import threading

from .conftest import RedisServer, wait_broker

ENV = {"SNORKY_PUBSUB_HISTORY_SIZE": "1000"}


def messages(client, n):
    return [client.wait_for(lambda m: m.get("type") == "message")["message"]
            for _ in range(n)]


def test_offsets_are_one_sequence_across_processes(cluster, connect):
    a, b = cluster(2, **ENV)
    sub_a, sub_b = connect(a), connect(b)
    pos = sub_a.ok("pubsub", "subscribe", {"channel": "c"})
    assert sub_b.ok("pubsub", "subscribe", {"channel": "c"}) == pos
    pub_a, pub_b = connect(a), connect(b)
    for i in range(50):
        (pub_a if i % 2 else pub_b).ok("pubsub", "publish", {"channel": "c", "message": i})
    for sub in (sub_a, sub_b):
        got = [sub.wait_for(lambda m: m.get("type") == "message") for _ in range(50)]
        assert [m["offset"] for m in got] == list(range(1, 51))          # in offset order, on both
        assert [m["message"] for m in got] == list(range(50))
        assert {m["epoch"] for m in got} == {pos["epoch"]}
        sub.expect_silence(0.3)


def test_recover_on_another_process_after_being_cut(cluster, connect):
    a, b = cluster(2, **ENV)
    first = connect(a)
    epoch = first.ok("pubsub", "subscribe", {"channel": "r"})["epoch"]
    pub = connect(b)
    for i in range(10):
        pub.ok("pubsub", "publish", {"channel": "r", "message": i})
    seen = [m["offset"] for m in (first.wait_for(lambda m: m.get("type") == "message") for _ in range(4))]
    first.close()                                          # cut after offset 4
    for i in range(10, 15):
        pub.ok("pubsub", "publish", {"channel": "r", "message": i})
    back = connect(b)                                      # comes back on the other process
    back.send("pubsub", {"command": "subscribe", "callId": 1,
                         "params": {"channel": "r", "since": {"offset": seen[-1], "epoch": epoch}}})
    replay = []
    while True:
        env = back.recv()["message"]
        if env.get("type") == "response":
            answer = env["data"]
            break
        replay.append(env)
    assert [m["message"] for m in replay] == list(range(4, 15))
    assert answer == {"recovered": True, "offset": 15, "epoch": epoch}


def test_publishers_racing_a_recovering_subscribe_lose_and_repeat_nothing(cluster, connect):
    a, b = cluster(2, **ENV)
    watcher = connect(a)
    epoch = watcher.ok("pubsub", "subscribe", {"channel": "race"})["epoch"]
    stop = threading.Event()
    total = []

    def publish(srv):
        p = connect(srv)
        i = 0
        while not stop.is_set() and i < 400:
            p.ok("pubsub", "publish", {"channel": "race", "message": i})
            i += 1
        total.append(i)

    threads = [threading.Thread(target=publish, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    last = 0
    got = []
    for round_ in range(6):                                # reconnect at random points mid-stream
        c = connect(b if round_ % 2 else a)
        c.send("pubsub", {"command": "subscribe", "callId": 1,
                          "params": {"channel": "race", "since": {"offset": last, "epoch": epoch}}})
        want = rng.randint(5, 40)
        answered = False
        while not answered or len([o for o in got if o > last]) < want:
            env = c.recv(10)["message"]
            if env.get("type") == "response":
                assert env["data"]["recovered"] is True
                answered = True
            elif env.get("type") == "message":
                got.append(env["offset"])
                if len(got) > 1 and got[-1] <= got[-2]:
                    raise AssertionError(f"round {round_} since {last}: {got[-10:]} answered={answered}")
        last = got[-1]
        c.close()
    stop.set()
    for t in threads:
        t.join(30)
    assert got == list(range(1, len(got) + 1))             # every offset once, in order


def test_a_redis_restart_gives_a_new_epoch_and_says_recovered_false(cluster, connect, redis_server):
    a, _ = cluster(2, **ENV)
    c = connect(a)
    old = c.ok("pubsub", "subscribe", {"channel": "e"})
    c.ok("pubsub", "publish", {"channel": "e", "message": "before"})
    c.wait_for(lambda m: m.get("type") == "message")
    redis_server.kill()
    redis_server.start()            # the same port, no persistence: the history is gone (killed at teardown)
    wait_broker(a)
    d = connect(a)
    answer = d.ok("pubsub", "subscribe", {"channel": "e", "since": {"offset": 1, "epoch": old["epoch"]}})
    assert answer["recovered"] is False and answer["epoch"] != old["epoch"] and answer["offset"] == 0
    d.ok("pubsub", "publish", {"channel": "e", "message": "after"})
    msg = d.wait_for(lambda m: m.get("type") == "message")
    assert (msg["offset"], msg["epoch"]) == (1, answer["epoch"])


def test_chat_rejoin_on_another_process_replays_the_missed_lines(cluster, connect):
    from snorky_sync.auth import ConnectionTokens

    secret = "cluster-token-secret-0123456789"
    a, b = cluster(2, SNORKY_CHAT_HISTORY_SIZE="100", SNORKY_TOKEN_SECRET=secret)

    def user(srv, identity):
        return connect(srv, "/ws?token=" + ConnectionTokens(secret).create(identity))

    ann, bob = user(a, "ann"), user(b, "bob")
    joined = ann.ok("chat", "join", {"channel": "room"})
    bob.ok("chat", "join", {"channel": "room"})
    bob.ok("chat", "send", {"channel": "room", "body": "line 1"})
    line = ann.wait_for(lambda m: m.get("type") == "message")
    assert (line["body"], line["offset"], line["epoch"]) == ("line 1", 1, joined["epoch"])
    ann.close()                                            # ann's Wi-Fi drops
    for i in (2, 3, 4):
        bob.ok("chat", "send", {"channel": "room", "body": f"line {i}"})
    back = user(b, "ann")                                  # and she comes back on the other process
    back.send("chat", {"command": "join", "callId": 1, "params": {
        "channel": "room", "since": {"offset": line["offset"], "epoch": line["epoch"]}}})
    replayed = []
    while True:
        msg = back.recv()["message"]
        if msg.get("type") == "response":
            break
        if msg.get("type") == "message":
            replayed.append(msg["body"])
    assert replayed == ["line 2", "line 3", "line 4"]
    assert msg["data"]["recovered"] is True and msg["data"]["offset"] == 4
    bob.ok("chat", "send", {"channel": "room", "body": "line 5"})
    assert back.wait_for(lambda m: m.get("type") == "message")["body"] == "line 5"   # live, once
    back.expect_silence(0.3)


def test_a_killed_worker_s_pages_recover_on_another(cluster, connect):
    import os
    import signal

    a, b = cluster(2, **ENV)
    page = connect(a)
    epoch = page.ok("pubsub", "subscribe", {"channel": "k"})["epoch"]
    pub = connect(b)
    pub.ok("pubsub", "publish", {"channel": "k", "message": 1})
    last = page.wait_for(lambda m: m.get("type") == "message")["offset"]
    os.kill(a.proc.pid, signal.SIGKILL)                    # the worker dies under the page
    a.proc.wait(10)
    for i in range(2, 6):
        pub.ok("pubsub", "publish", {"channel": "k", "message": i})
    back = connect(b)
    back.send("pubsub", {"command": "subscribe", "callId": 1,
                         "params": {"channel": "k", "since": {"offset": last, "epoch": epoch}}})
    got = []
    while True:
        msg = back.recv()["message"]
        if msg.get("type") == "response":
            break
        got.append(msg["message"])
    assert got == [2, 3, 4, 5] and msg["data"]["recovered"] is True


def test_without_redis_history_answers_history_unavailable(cluster, connect, redis_server):
    from snorky_sync.auth import ConnectionTokens

    secret = "cluster-token-secret-0123456789"
    (a,) = cluster(1, SNORKY_CHAT_HISTORY_SIZE="10", SNORKY_TOKEN_SECRET=secret, **ENV)
    c = connect(a, "/ws?token=" + ConnectionTokens(secret).create("ann"))
    c.ok("pubsub", "subscribe", {"channel": "s"})
    c.ok("chat", "join", {"channel": "room"})
    redis_server.kill()
    wait_broker(a, "disconnected")
    # every call answers within a few seconds of an outage: a Chat join confirms
    # two topics, and waited 5 s for each (10 s, past a page's patience)
    c.timeout = 6.0
    for service, command, params in (
            ("pubsub", "publish", {"channel": "s", "message": 1}),      # the append script fails
            ("pubsub", "subscribe", {"channel": "t"}),                  # not confirmed, not read
            ("chat", "send", {"channel": "room", "body": "hello"}),
            ("chat", "join", {"channel": "hall"})):
        answer = c.call(service, command, params)
        assert (answer["type"], answer.get("message")) == ("error", "History unavailable"), (command, answer)
    redis_server.start()  # back on its port (the fixture kills it at teardown)
    wait_broker(a)
    assert c.ok("pubsub", "subscribe", {"channel": "t"})["offset"] == 0   # the failed one was undone


def test_subscribes_made_while_the_broker_connects_wait_for_it(tmp_path):
    """A worker reached by its pages before its Redis connection is up (a
    restart: every page comes back at once) makes their subscribes wait for
    the connection, not answer ``History unavailable``."""
    from support.servers import ServerProcess, free_port
    from support.wsclient import SnorkyTestClient

    redis = RedisServer(port=free_port())          # not running yet
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port := free_port())], port=port,
                        env={"SNORKY_REDIS_URL": redis.url, **ENV})
    clients = []
    try:
        wait_broker(srv, "disconnected")
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(20)]
        for i, c in enumerate(clients):
            c.send("pubsub", {"command": "subscribe", "callId": i, "params": {"channel": f"boot{i % 3}"}})
        redis.start()
        answers = [c.recv(timeout=15)["message"] for c in clients]
        assert [a["type"] for a in answers] == ["response"] * 20, answers
        assert all(set(a["data"]) == {"offset", "epoch"} for a in answers)
        clients[0].ok("pubsub", "publish", {"channel": "boot0", "message": "after"})
        got = clients[3].wait_for(lambda m: m.get("type") == "message")
        assert got["message"] == "after" and got["offset"] == 1
    finally:
        for c in clients:
            c.close()
        srv.stop()
        redis.kill()


def test_a_burst_of_subscribes_waits_for_redis_connections_not_fails(cluster, connect):
    """More pages subscribing at once than the process keeps Redis connections
    (POOL_SIZE): the extra calls wait for a free connection; redis-py's own
    pool answered half of 200 ``History unavailable`` (Too many connections)."""
    from snorky_sync.brokers.redis import POOL_SIZE

    (a,) = cluster(1, **ENV)
    n = POOL_SIZE + 72
    clients = [connect(a) for _ in range(n)]
    for i, c in enumerate(clients):
        c.send("pubsub", {"command": "subscribe", "callId": i, "params": {"channel": "burst"}})
    answers = [c.recv(timeout=30)["message"] for c in clients]
    assert [m for m in answers if m["type"] != "response"] == []

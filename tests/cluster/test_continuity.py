"""Continuity of history channels across a worker's lost Redis connection
(issue #25 item 1): a live subscriber sees every offset of a channel in
order, exactly once, or is told it did not (a ``gap`` notification).

Two workers on a real redis-server; a subscriber of a history channel on
each; a publisher on one of them.  The Redis connection of a worker is cut
in the ways it happens: its connections frozen (a half-open TCP connection:
the worker notices it is deaf and reconnects), redis-server killed and
restarted on the same port (everything in it lost).  The Sentinel failover
is in test_sentinel_failover.py.
"""
import threading

from support.redis_relay import RedisRelay
from support.servers import ServerProcess, free_port, wait_metric
from support.streams import Stream

from .conftest import RedisServer, wait_broker

HISTORY = {"SNORKY_PUBSUB_HISTORY_SIZE": "1000"}
FAST = {"SNORKY_CLUSTER_HEARTBEAT": "0.2", "SNORKY_CLUSTER_EXPIRY": "1.5"}


class Positioned(threading.Thread):
    """Reads one subscriber's notifications of ``channel`` (messages and gap
    notifications) into ``events``, in arrival order."""

    def __init__(self, client, channel, answer):
        super().__init__(daemon=True)
        self.client, self.channel = client, channel
        self.start_at = (answer["epoch"], answer["offset"])
        self.events = []
        self.cond = threading.Condition()
        self.start()

    def run(self):
        try:
            while True:
                msg = self.client.recv(120)["message"]
                if msg.get("channel") == self.channel and msg.get("type") in ("message", "gap"):
                    with self.cond:
                        self.events.append(msg)
                        self.cond.notify_all()
        except Exception:
            pass

    def wait(self, check, timeout=30.0):
        with self.cond:
            return self.cond.wait_for(lambda: check(self.events), timeout)

    def payloads(self):
        return [m["message"] for m in self.events if m["type"] == "message"]

    def gaps(self):
        return [m for m in self.events if m["type"] == "gap"]


def check_positions(reader):
    """Every message follows the one before (same epoch: offset + 1; another
    epoch: only after a gap notification giving it, or from its offset 1);
    a gap notification resets the position.  Returns the number of gaps."""
    epoch, offset = reader.start_at
    gaps = 0
    for m in reader.events:
        if m["type"] == "gap":
            gaps += 1
            epoch, offset = m["epoch"], m["offset"]
            continue
        if m["epoch"] == epoch:
            assert m["offset"] == offset + 1, \
                f"offset {m['offset']} after {offset} in epoch {epoch} with no gap notification"
        else:
            assert m["offset"] == 1, f"epoch {m['epoch']} from offset {m['offset']}, unannounced"
        epoch, offset = m["epoch"], m["offset"]
    return gaps


def start_worker(url, **env):
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                        env={"SNORKY_REDIS_URL": url, **HISTORY, **env})
    wait_broker(srv)
    return srv


def test_a_frozen_listener_delivers_what_was_published_meanwhile(redis_server, connect):
    relay = RedisRelay(redis_server.port)
    servers = []
    try:
        deaf = start_worker(f"redis://127.0.0.1:{relay.port}/0", **FAST)
        servers.append(deaf)
        other = start_worker(redis_server.url, **FAST)
        servers.append(other)
        readers = []
        for srv in (deaf, other):
            sub = connect(srv)
            readers.append(Positioned(sub, "c", sub.ok("pubsub", "subscribe", {"channel": "c"})))
        publisher = connect(other)
        sent = []

        def publish(n):
            for _ in range(n):
                publisher.ok("pubsub", "publish", {"channel": "c", "message": len(sent)})
                sent.append(len(sent))

        publish(5)
        assert readers[0].wait(lambda ev: len(ev) >= 5)
        relay.freeze()                        # the deaf worker hears nothing from now on
        publish(20)                           # in Redis' history; lost to the deaf worker's connection
        wait_metric(deaf, "snorky_broker_deaf_reconnects_total", 1, timeout=30)
        wait_broker(deaf)
        publish(5)
        for reader in readers:
            assert reader.wait(lambda ev: sent[-1] in [m.get("message") for m in ev]), \
                f"{len(reader.payloads())} of {len(sent)} messages reached the subscriber"
            assert check_positions(reader) == 0
            assert reader.payloads() == sent  # filled from the history, in order, once
    finally:
        for srv in servers:
            srv.stop()
        relay.close()


def test_a_redis_restart_tells_the_subscribers_of_both_workers(redis_server, connect):
    servers = [start_worker(redis_server.url, **FAST) for _ in range(2)]
    restarted = RedisServer(redis_server.port)
    try:
        readers = []
        for srv in servers:
            sub = connect(srv)
            readers.append(Positioned(sub, "r", sub.ok("pubsub", "subscribe", {"channel": "r"})))
        publisher = connect(servers[0])

        def publish(i):  # refused while Redis is away
            return publisher.call("pubsub", "publish", {"channel": "r", "message": i})["type"] == "response"
        stream = Stream(publish, every=0.005)
        accepted = stream.accepted
        assert readers[1].wait(lambda ev: len(ev) >= 30), "no traffic through Redis"
        redis_server.kill()                                 # kill -9: everything in it is lost
        restarted.start()                                   # the same port, empty
        for srv in servers:
            wait_broker(srv)
        after = len(accepted) + 30
        assert readers[0].wait(lambda ev: len(ev) > after, 60)  # traffic again, in a new epoch
        stream.stop()
        last = accepted[-1]
        for reader in readers:
            assert reader.wait(lambda ev: last in [m.get("message") for m in ev])
            gaps = check_positions(reader)
            epochs = {m["epoch"] for m in reader.events if m["type"] == "message"}
            assert len(epochs) == 2, epochs
            assert gaps >= 1, "a new epoch (Redis lost everything) with no gap notification"
            got = reader.payloads()
            assert len(got) == len(set(got)), "a message delivered twice"
            assert got == sorted(got)
    finally:
        for srv in servers:
            srv.stop()
        restarted.kill()

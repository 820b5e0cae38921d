"""Redis Sentinel failover under traffic: two redis-servers (master + replica),
a real redis-sentinel, two snorky_sync processes on ``redis+sentinel://``.

The master is killed while one process publishes a numbered stream; the
sentinel promotes the replica; both processes must follow it and hear each
other again (none goes deaf), and what was lost in between is counted.
"""
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis
import requests

from support.servers import API_KEY, ServerProcess, free_port, metric
from support.streams import Stream
from support.waiting import wait_for, wait_redis
from support.wsclient import SnorkyTestClient

from .conftest import wait_broker

SERVICE = "snorkymaster"


def start_redis(port, workdir, *args):
    exe = shutil.which("redis-server")
    assert exe, "redis-server is required (scripts/test.sh installs it)"
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ping(port)
    return proc


def wait_ping(port, timeout=10.0):
    wait_redis(port, timeout)


def wait_for_state(what, check, timeout=30.0):
    """Redis/Sentinel state, only visible by asking (through a failover)."""
    return wait_for(check, timeout, what, ignore=(redis.RedisError, OSError))


@pytest.fixture
def sentinel_setup(tmp_path):
    exe = shutil.which("redis-sentinel")
    assert exe, "redis-sentinel is required (scripts/test.sh installs it)"
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    procs = {"master": start_redis(master_port, tmp_path)}
    procs["replica"] = start_redis(replica_port, tmp_path, "--replicaof", "127.0.0.1", str(master_port))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} 10000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n")
    procs["sentinel"] = subprocess.Popen([exe, str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
    wait_ping(sentinel_port)
    sentinel = redis.Redis(port=sentinel_port)
    replica = redis.Redis(port=replica_port)
    wait_for_state("the replica to sync", lambda: replica.info("replication")["master_link_status"] == "up")
    wait_for_state("the sentinel to know the replica",
             lambda: any(r["port"] == replica_port for r in sentinel.sentinel_slaves(SERVICE)))
    yield {"ports": (master_port, replica_port, sentinel_port), "procs": procs,
           "sentinel": sentinel,
           "url": f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}"}
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait(10)


def publish(srv, channel, message):
    r = requests.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10,
                      json={"service": "pubsub_backend", "message": {
                          "command": "publish", "params": {"channel": channel, "message": message}}})
    return r.status_code == 200


class Reader(threading.Thread):
    """Reads one client's notifications into ``got`` (blocking reads, no timeouts)."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.got = []
        self.cond = threading.Condition()
        self.start()

    def run(self):
        try:
            while True:
                msg = self.client.recv(120)["message"]["message"]
                with self.cond:
                    self.got.append(msg)
                    self.cond.notify_all()
        except Exception:
            pass

    def wait(self, check, timeout=30.0):
        with self.cond:
            return self.cond.wait_for(lambda: check(self.got), timeout)


def test_workers_follow_the_new_master_after_the_old_one_is_killed(sentinel_setup):
    master_port, replica_port, _ = sentinel_setup["ports"]
    servers = []
    clients = []
    try:
        for _ in range(2):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": sentinel_setup["url"]})
            servers.append(srv)
            wait_broker(srv)
        a, b = servers
        local, remote = SnorkyTestClient(a.ws_url + "/ws"), SnorkyTestClient(b.ws_url + "/ws")
        back = SnorkyTestClient(a.ws_url + "/ws")  # hears what b publishes
        clients = [local, remote, back]
        for c, ch in ((local, "stream"), (remote, "stream"), (back, "probe-b")):
            c.ok("pubsub", "subscribe", {"channel": ch})

        readers = {c: Reader(c) for c in clients}
        # a numbered stream published on a, every 10 ms, across the kill
        stream = Stream(lambda seq: publish(a, "stream", seq))
        published = stream.accepted
        assert readers[remote].wait(lambda got: len(got) >= 50), "no traffic through Redis"
        killed_at = time.monotonic()
        sentinel_setup["procs"]["master"].send_signal(signal.SIGKILL)
        sentinel_setup["procs"]["master"].wait(10)
        sentinel = sentinel_setup["sentinel"]
        wait_for_state("the sentinel to promote the replica",
                 lambda: sentinel.sentinel_get_master_addr_by_name(SERVICE)[1] == replica_port)
        promoted_at = time.monotonic()
        after = published[-1] + 1  # published after the promotion
        # neither process is deaf: a's stream reaches b again, and b's probes reach a
        assert readers[remote].wait(lambda got: got[-1] >= after), \
            "process b never heard process a again: deaf after the failover"
        deadline = time.monotonic() + 30
        probe = 0
        while not readers[back].got and time.monotonic() < deadline:
            probe += 1  # b's probes are lost until b is back on the new master
            publish(b, "probe-b", probe)
            readers[back].wait(lambda got: got, 0.2)
        assert readers[back].got, "process a never heard process b again: deaf after the failover"
        recovered_at = time.monotonic()
        stream.stop()
        last = published[-1]
        assert readers[remote].wait(lambda got: got[-1] >= last)
        assert readers[local].wait(lambda got: got[-1] >= last)
        got_remote, got_local = readers[remote].got, readers[local].got
        # local delivery never depends on Redis: nothing lost, in order
        assert got_local == published
        # through Redis: in order, no duplicates; the gap is the failover window only
        assert got_remote == sorted(set(got_remote))
        lost = sorted(set(published) - set(got_remote))
        assert lost, "nothing lost across a master kill? then the test did not kill mid-traffic"
        # one gap, opened by the kill: once a process is back on the new master it stays
        assert lost == list(range(lost[0], lost[-1] + 1)), lost
        assert lost[0] > got_remote[49]
        failed = metric(a, "snorky_broker_publish_failed_total")
        print(f"\nfailover: master killed -> replica promoted {promoted_at - killed_at:.1f}s, "
              f"-> both processes hear each other {recovered_at - killed_at:.1f}s; "
              f"stream: {len(published)} published, {len(lost)} lost on the other process "
              f"(seq {lost[0]}..{lost[-1]}), {int(failed)} counted as broker_publish_failed, "
              f"broker_disconnects a={int(metric(a, 'snorky_broker_disconnects_total'))} "
              f"b={int(metric(b, 'snorky_broker_disconnects_total'))}")
        assert failed >= 1
        assert metric(a, "snorky_broker_disconnects_total") >= 1
        assert metric(b, "snorky_broker_disconnects_total") >= 1
        for srv in servers:
            assert wait_broker(srv)["broker"]["state"] == "connected"
    finally:
        for c in clients:
            c.close()
        for srv in servers:
            srv.stop()


def publish_accepted(srv, channel, message):
    """A backend publish that Redis took (with history: it has an offset)."""
    try:
        r = requests.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, timeout=10,
                          json={"service": "pubsub_backend", "message": {
                              "command": "publish", "params": {"channel": channel, "message": message}}})
    except requests.RequestException:
        return False
    return r.status_code == 200 and r.json()["message"]["type"] == "response"


def test_with_history_no_subscriber_misses_an_offset_unknowingly(sentinel_setup):
    """Issue #25 item 1: the failover above, with history on.  Every live
    subscriber, on both workers, sees contiguous offsets with no duplicate,
    or is sent a gap notification; what Redis took is delivered unless a
    gap notification says otherwise."""
    from .test_continuity import Positioned, check_positions

    replica_port = sentinel_setup["ports"][1]
    servers, clients = [], []
    try:
        for _ in range(2):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": sentinel_setup["url"],
                                     "SNORKY_PUBSUB_HISTORY_SIZE": "1000"})
            servers.append(srv)
            wait_broker(srv)
        a, b = servers
        readers = []
        for srv in (a, b, b):
            c = SnorkyTestClient(srv.ws_url + "/ws")
            clients.append(c)
            readers.append(Positioned(c, "stream", c.ok("pubsub", "subscribe", {"channel": "stream"})))
        # on a, every 10 ms, across the kill (refused while Redis is away)
        stream = Stream(lambda seq: publish_accepted(a, "stream", seq))
        accepted = stream.accepted
        assert readers[1].wait(lambda ev: len(ev) >= 50), "no traffic through Redis"
        sentinel_setup["procs"]["master"].send_signal(signal.SIGKILL)
        sentinel_setup["procs"]["master"].wait(10)
        sentinel = sentinel_setup["sentinel"]
        wait_for_state("the sentinel to promote the replica",
                       lambda: sentinel.sentinel_get_master_addr_by_name(SERVICE)[1] == replica_port)
        before = len(accepted)
        wait_for(lambda: len(accepted) > before + 50, 60, "publishes taken by the new master")
        stream.stop()
        last = accepted[-1]
        for name, reader in zip(("a", "b", "b'"), readers):
            assert reader.wait(lambda ev: last in [m.get("message") for m in ev]), \
                f"subscriber on {name} never got the last publish"
            gaps = check_positions(reader)   # contiguous (so no duplicate), or told
            got = reader.payloads()
            missing = sorted(set(accepted) - set(got))
            print(f"\nsubscriber on {name}: {len(got)} delivered of {len(accepted)} taken by Redis, "
                  f"{len(missing)} missing, {gaps} gap notifications")
            assert len(got) == len(set(got)), "a message delivered twice"
            assert not missing or gaps, f"taken by Redis, missed without a gap notification: {missing}"
    finally:
        for c in clients:
            c.close()
        for srv in servers:
            srv.stop()

"""A real redis-server on a free port, and several snorky_sync processes sharing it."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from snorky_sync.auth import ConnectionTokens
from support.servers import API_KEY, ServerProcess, free_port
from support.waiting import attempts, healthz, wait_for, wait_redis
from support.wsclient import SnorkyTestClient


class RedisServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is required (scripts/test.sh installs it)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_redis(self.port, 10)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def redis_server():
    r = RedisServer().start()
    yield r
    r.kill()


def history_across(sub, pub, channels, timeout=None) -> dict:
    """``sub`` subscribes to each of ``channels`` (PubSub with history) and
    ``pub`` publishes two messages on each: ``sub`` gets offsets 1 and 2, in
    the channel's epoch.  Returns {channel: epoch}."""
    epochs = {c: sub.ok("pubsub", "subscribe", {"channel": c})["epoch"] for c in channels}
    for c in channels:
        for i in range(2):
            pub.ok("pubsub", "publish", {"channel": c, "message": [c, i]})
    # every message, whatever the order between channels: those of channels
    # on different shards (or masters) come over different connections
    got: dict = {c: [] for c in channels}

    def all_in(m) -> bool:
        if m.get("type") == "message" and m.get("channel") in got:
            got[m["channel"]].append((m["offset"], m["message"], m["epoch"]))
        return sum(map(len, got.values())) >= 2 * len(channels)
    sub.wait_for(all_in, timeout)
    assert got == {c: [(1, [c, 0], epochs[c]), (2, [c, 1], epochs[c])] for c in channels}
    return epochs


def recovers_since_first(late_page, epochs: dict) -> None:
    """For each channel of ``history_across``, a page from ``late_page()``
    subscribing ``since`` offset 1 gets message 2, then ``recovered: true``."""
    for c, epoch in epochs.items():
        late = late_page()
        late.send("pubsub", {"command": "subscribe", "callId": 7,
                             "params": {"channel": c, "since": {"offset": 1, "epoch": epoch}}})
        replay = late.recv()["message"]
        assert (replay["offset"], replay["message"]) == (2, [c, 1])
        assert late.recv()["message"]["data"] == {"recovered": True, "offset": 2, "epoch": epoch}
        late.close()


def wait_broker(srv, state="connected", timeout=20.0):
    """Wait until the server's /healthz shows the broker in ``state``."""
    def seen():
        answer = healthz(srv, timeout=2)
        return answer if answer["broker"]["state"] == state else None
    return wait_for(seen, timeout, f"the broker of {srv.url} {state}", ignore=(requests.RequestException,))


@pytest.fixture
def cluster(redis_server):
    """start(n) -> n embedded snorky_sync processes on one Redis."""
    servers = []

    def start(n=2, **env):
        for _ in range(n):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": redis_server.url, **env})
            servers.append(srv)
            wait_broker(srv)
        return servers[-n:]

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def connect(cluster):
    """connect(server) -> a SnorkyTestClient; all closed before the servers stop."""
    clients = []

    def _connect(srv, path="/ws"):
        c = SnorkyTestClient(srv.ws_url + path)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        c.close()


CONTROL_SECRET = "control-cluster-secret-0123456789abcdef"


class ControlCluster:
    """Two gunicorn-gevent workers serving tests/cluster/control_app.py on a
    real redis-server, each known to the other's broker (``info()`` asked on
    either lists both) before a test starts; ``pids``: the two workers.

    ``connect(identity)``: a page (SnorkyTestClient, ``worker_pid`` set).
    ``spread(identity, per_worker)``: pages until each worker holds that many.
    ``control(command, **params)``: a backend ``control`` call, its answer's
    data (``worker=pid``: answered by that worker).  ``batch(calls)``: several
    backend calls through one worker, in order.
    """

    def __init__(self, redis_server: RedisServer, **env: str) -> None:
        self.tokens = ConnectionTokens(CONTROL_SECRET)
        self.clients: list[SnorkyTestClient] = []
        self.sessions: dict[int, requests.Session] = {}
        self.pids: list[int] = []
        self.srv = ServerProcess("gunicorn-gevent", app="tests.cluster.control_app:app", workers=2, env={
            "SNORKY_REDIS_URL": redis_server.url, "TEST_SECRET": CONTROL_SECRET,
            # gunicorn may hand a worker many connections before the other
            "SNORKY_MAX_CONNECTIONS_PER_IDENTITY": "1000", **env})

    def wait_ready(self) -> None:
        wait_broker(self.srv)

        def both_listed():
            pids = sorted(p["pid"] for p in self.control("info")["processes"])
            return pids if len(pids) == 2 else None
        # a worker answers info() for the peers its broker has heard a heartbeat
        # from (and waits for their answers to control commands): none, right after the start
        self.pids = wait_for(both_listed, 20, "a worker knowing the other")
        for pid in self.pids:
            wait_for(lambda pid=pid: len(self.control("info", worker=pid)["processes"]) == 2, 20,
                     f"worker {pid} knowing the other")

    def connect(self, identity: str, timeout: float = 20.0) -> SnorkyTestClient:
        c = SnorkyTestClient(f"{self.srv.ws_url}/ws?token={self.tokens.create(identity)}", timeout=timeout)
        self.clients.append(c)
        c.worker_pid = c.ok("worker", "pid")  # type: ignore[attr-defined]
        return c

    def spread(self, identity: str, per_worker: int = 1) -> dict[int, list[SnorkyTestClient]]:
        """{pid: pages of ``identity``}, at least ``per_worker`` on each worker:
        every page opened is in it (gunicorn may hand one worker several in a row)."""
        by_pid: dict[int, list[SnorkyTestClient]] = {pid: [] for pid in self.pids}
        for _ in range(400):
            c = self.connect(identity)
            assert c.worker_pid in by_pid, f"a page reached {c.worker_pid}, not a worker of {self.pids}"
            by_pid[c.worker_pid].append(c)
            if all(len(pages) >= per_worker for pages in by_pid.values()):
                return by_pid
        raise AssertionError(f"{per_worker} pages of {identity} never reached each worker: "
                             f"{ {pid: len(pages) for pid, pages in by_pid.items()} }")

    def call(self, service: str, command: str, params: dict | None = None, http=requests):
        """One backend call (POST /backend; ``http``: a requests.Session to
        reuse its connection); the data of its answer, which must be a response."""
        answer = http.post(f"{self.srv.url}/backend", headers={"X-Backend-Key": API_KEY}, timeout=10, json={
            "service": service, "message": {"command": command, "params": params or {}, "callId": 1}})
        assert answer.status_code == 200, answer.text
        message = answer.json()["message"]
        assert message["type"] == "response", message
        return message["data"]

    def control(self, command: str, worker: int | None = None, **params):
        """``command`` of the backend control service; ``worker``: answered by that worker."""
        if worker is None:
            return self.call("control", command, params)
        return self.batch([("control", command, params)], worker)[0]

    def _answering(self, http: requests.Session) -> int:
        return self.call("control", "info", http=http)["processes"][0]["pid"]  # the answering one first

    def batch(self, calls, worker: int | None = None) -> list:
        """The answers to ``calls`` ((service, command, params), sent in order)
        made over one kept-alive connection that ``info()`` shows reached one
        worker (``worker``, when given) just before and just after: gunicorn
        closes a connection idle for 2 s, and a new one lands on either worker."""
        for _ in attempts():
            http = self.sessions.pop(worker, None) if worker is not None else None
            http = http or requests.Session()
            here = self._answering(http)
            old = self.sessions.setdefault(here, http)
            if old is not http:
                old.close()
                self.sessions[here] = http
            if worker not in (None, here):
                continue
            answers = [self.call(service, command, params, http) for service, command, params in calls]
            assert self._answering(http) == here, "the kept-alive connection changed workers"
            return answers
        raise AssertionError(f"the backend never reached worker {worker}")

    def close(self) -> None:
        for http in self.sessions.values():
            http.close()
        for c in self.clients:
            c.close()
        self.srv.stop()


@pytest.fixture
def control_cluster(request, redis_server):
    """start(**env) -> a ControlCluster (``env``: more of the workers'
    environment); pages, sessions and server closed after the test, the
    server's log printed when it failed."""
    started: list[ControlCluster] = []

    def start(**env: str) -> ControlCluster:
        cluster = ControlCluster(redis_server, **env)
        started.append(cluster)
        cluster.wait_ready()
        return cluster

    yield start
    for cluster in started:
        cluster.close()
        if request.session.testsfailed:
            print(f"--- control_app log ---\n{cluster.srv.log()[-4000:]}")

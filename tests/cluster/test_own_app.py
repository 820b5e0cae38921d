"""A user's own app mounting ``Snorky(app)``, under gunicorn -k gevent -w 2 with a real Redis.

Before: SNORKY_REDIS_URL was ignored by such an app (only the default app made a
broker), a registry given a broker nobody started served one process only, and
nothing said so.  Now every registry mounted without a broker shares the app's
Redis broker, and every broker of a mounted registry is started when the app
first serves.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from cluster.conftest import wait_broker
from support.servers import API_KEY, ROOT, ServerProcess, free_port
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

OWN_APP = '''
import logging
import os

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
from snorky_sync.services.pubsub import PubSubService


class Worker(RPCService):
    @rpc_command
    def pid(self, req):
        return os.getpid()


MODE = os.environ.get("OWN_APP_MODE", "shared")
if MODE == "own-unstarted":
    # wired by hand, as docs used to need: a broker of its own, never started
    from snorky_sync.brokers import make_broker
    registry = ServiceRegistry(broker=make_broker(os.environ["OWN_REDIS_URL"]))
else:
    registry = ServiceRegistry()  # no broker: the app's, from SNORKY_REDIS_URL
registry.register_service(PubSubService("pubsub", history_size=int(os.environ.get("OWN_HISTORY", "0"))))
registry.register_service(Worker("worker"))

logging.basicConfig(level=logging.INFO)
app = Flask(__name__)
snorky = Snorky(app)
snorky.websocket("/ws", registry)
snorky.health("/healthz")
snorky.metrics("/metrics", api_key=os.environ["SNORKY_API_KEY"])
'''


@pytest.fixture
def own_app(tmp_path):
    (tmp_path / "ownapp.py").write_text(OWN_APP)
    return tmp_path


def gunicorn(app_dir, env, workers=2, config=()):
    port = free_port()
    return ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-k", "gevent", "-w", str(workers),
                               "--graceful-timeout", "5", "-b", f"127.0.0.1:{port}", *config, "ownapp:app"],
                         port=port, cwd=app_dir, env=env)


def clients_on_two_workers(srv, clients):
    """Connect until two clients hold connections to different workers (the
    kernel spreads accepts between them; a worker still booting takes none,
    so bounded by time, not by a count of tries): {pid: client}."""
    by_pid = {}

    def one_more():
        c = SnorkyTestClient(srv.ws_url + "/ws")
        clients.append(c)
        c.worker_pid = c.ok("worker", "pid")
        by_pid.setdefault(c.worker_pid, c)
        return len(by_pid) == 2
    wait_for(one_more, 60, "a connection on the second worker", interval=0.01)
    return by_pid


def wait_healthy(srv, timeout=20.0):
    return wait_broker(srv, "connected", timeout)


@pytest.mark.parametrize("mode,history", [("shared", "0"), ("shared", "20"), ("own-unstarted", "20")])
def test_publish_crosses_workers_of_a_mounted_app(own_app, redis_server, mode, history):
    env = {"OWN_APP_MODE": mode, "OWN_HISTORY": history}
    if mode == "shared":
        env["SNORKY_REDIS_URL"] = redis_server.url
    else:  # the app's broker comes from the registry, not from SNORKY_REDIS_URL
        env["OWN_REDIS_URL"] = redis_server.url
    srv = gunicorn(own_app, env)
    clients = []
    try:
        assert wait_healthy(srv)["status"] == "ok"
        (pid_a, a), (pid_b, b) = clients_on_two_workers(srv, clients).items()
        a.ok("pubsub", "subscribe", {"channel": "poll"})
        b.ok("pubsub", "subscribe", {"channel": "poll"})
        b.ok("pubsub", "publish", {"channel": "poll", "message": {"from": pid_b}})
        for c in (a, b):  # the other worker's subscriber, and the publisher's own worker
            assert c.next_message("poll", timeout=10) == {"from": pid_b}
        log = srv.log()
        if mode == "own-unstarted":
            assert "RedisBroker of <ServiceRegistry ['pubsub', 'worker']> is not started: " \
                   "snorky_sync starts it when the app serves its first request" in log
        assert log.count("RedisBroker (redis://127.0.0.1") >= 2  # started in each worker
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_one_broker_per_app_and_none_without_url(own_app):
    """In process: every registry mounted without a broker shares the app's one;
    one with its own keeps it; no URL, no broker (one process, as before)."""
    code = textwrap.dedent('''
        from gevent import monkey; monkey.patch_all()
        from flask import Flask
        from snorky_sync import ServiceRegistry, Snorky
        from snorky_sync.brokers import LocalBroker
        from snorky_sync.services.pubsub import PubSubService, PubSubBackend

        app = Flask("a")
        app.config["SNORKY_REDIS_URL"] = "redis://127.0.0.1:1/0"  # app.config wins over the environment
        snorky = Snorky(app)
        front, back, own = ServiceRegistry(), ServiceRegistry(), ServiceRegistry(broker=LocalBroker())
        pubsub = PubSubService("pubsub")
        front.register_service(pubsub)
        back.register_service(PubSubBackend("pubsub_backend", pubsub))
        snorky.websocket("/ws", front)
        snorky.sockjs("/sockjs", front)
        snorky.backend("/backend", back, api_key="k" * 16)
        snorky.websocket("/own", own)
        assert type(snorky.broker).__name__ == "RedisBroker", snorky.broker
        assert snorky.broker.url == "redis://127.0.0.1:1/0"
        assert front.broker is back.broker is pubsub.broker is snorky.broker
        assert type(own.broker) is LocalBroker
        assert not snorky.broker.started  # not in a process that only imports the app

        later = Snorky()  # routes first, the app afterwards: the environment's URL
        reg = ServiceRegistry()
        later.websocket("/ws", reg)
        assert reg.broker is None
        later.init_app(Flask("b"))
        assert reg.broker is later.broker and later.broker.url == "redis://127.0.0.1:2/0"

        from snorky_sync.settings import Settings
        plain = Snorky(Flask("c"), Settings())  # settings given, without a URL: no broker
        reg = ServiceRegistry()
        plain.websocket("/ws", reg)
        assert plain.broker is None and reg.broker is None
        print("ok")
    ''')
    env = {**os.environ, "SNORKY_REDIS_URL": "redis://127.0.0.1:2/0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=own_app, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_missing_redis_package_names_the_extra(own_app, tmp_path_factory):
    shim = tmp_path_factory.mktemp("shim")
    (shim / "redis").mkdir()
    (shim / "redis" / "__init__.py").write_text("raise ImportError('shim: redis is not installed')\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(shim), "SNORKY_REDIS_URL": "redis://127.0.0.1:1/0",
           "SNORKY_API_KEY": API_KEY}
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "--no-control-socket", "-k", "gevent", "-w", "1",
                           "-b", f"127.0.0.1:{port}", "ownapp:app"], cwd=own_app, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert ('ImportError: SNORKY_REDIS_URL is set but the redis package is not installed: '
            'pip install "redis[hiredis]>=5"') in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_metrics_of_all_workers(own_app, redis_server, tmp_path_factory, sig):
    """PROMETHEUS_MULTIPROC_DIR: /metrics answers for both workers, whichever takes the
    scrape; a worker that exits (SIGTERM: by itself; SIGKILL: the shipped config's
    child_exit hook) takes its gauges along."""
    mp = tmp_path_factory.mktemp("prom")
    if sig == signal.SIGKILL:
        # the shipped config: its on_starting empties the directory of a previous run
        # (this stale file would break every scrape), its child_exit forgets a killed worker
        (mp / "counter_1.db").write_bytes(b"a previous run")
        config = ["-c", "python:snorky_sync.gunicorn_conf"]
    else:  # a config of the user's own with only worker_exit: the worker cleans up itself
        (own_app / "gunicorn_own.py").write_text("from snorky_sync.gunicorn_hooks import worker_exit\n")
        config = ["-c", "gunicorn_own.py"]
    srv = gunicorn(own_app, {"SNORKY_REDIS_URL": redis_server.url, "PROMETHEUS_MULTIPROC_DIR": str(mp)},
                   config=config)
    clients = []
    try:
        wait_healthy(srv)
        by_pid = clients_on_two_workers(srv, clients)
        for c in by_pid.values():
            for _ in range(5):
                c.ok("worker", "pid")
        total = len(clients) + 5 * 2  # every client called pid once, the two chosen 5 more times
        open_now = len(clients)

        def scrape():
            text = requests.get(srv.url + "/metrics", headers={"X-Backend-Key": API_KEY}, timeout=5).text
            values = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            return values

        deadline = time.monotonic() + 20
        want = {'snorky_rpc_calls_total{command="pid",service="worker"}': total,
                "snorky_websockets_open": open_now, 'snorky_broker_state{state="connected"}': 2}
        while True:
            got = scrape()
            seen = {k: got.get(k) for k in want}
            if seen == want:
                break
            assert time.monotonic() < deadline, f"{seen} != {want}"
            time.sleep(0.1)  # the workers copy their values once a second: polling for them
        # a worker that exits takes its gauges along (its last copy said its
        # clients were open), its counters stay counted
        gone = next(iter(by_pid))
        staying = sum(1 for c in clients if c.worker_pid != gone)
        os.kill(gone, sig)
        deadline = time.monotonic() + 20
        while True:
            got = scrape()
            if got.get("snorky_websockets_open") == staying:
                break
            assert time.monotonic() < deadline, (got.get("snorky_websockets_open"), staying)
            time.sleep(0.1)  # polling for the workers' copies
        assert got['snorky_rpc_calls_total{command="pid",service="worker"}'] == total
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_the_scaling_page_app_on_two_workers(tmp_path, redis_server):
    """docs/scaling.md's myapp.py and its gunicorn command, with a real Redis."""
    page = (ROOT / "docs" / "scaling.md").read_text()
    code = page.split("```python\n# myapp.py\n", 1)[1].split("```", 1)[0]
    assert "SNORKY_WORKERS=2" in page and "gunicorn -c python:snorky_sync.gunicorn_conf myapp:app" in page
    # test-only: a command that says which worker a connection reached
    (tmp_path / "myapp.py").write_text(code + textwrap.dedent('''
        from snorky_sync import RPCService, rpc_command

        class Worker(RPCService):
            @rpc_command
            def pid(self, req):
                return os.getpid()

        registry.register_service(Worker("worker"))
    '''))
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "-c", "python:snorky_sync.gunicorn_conf", "myapp:app"],
                        port=port, cwd=tmp_path,
                        env={"SNORKY_REDIS_URL": redis_server.url, "SNORKY_WORKERS": "2"})
    clients = []
    try:
        wait_healthy(srv)
        (_, a), (_, b) = clients_on_two_workers(srv, clients).items()
        a.ok("pubsub", "subscribe", {"channel": "poll"})
        b.ok("pubsub", "publish", {"channel": "poll", "message": "yes"})
        assert a.next_message("poll", timeout=10) == "yes"
    finally:
        for c in clients:
            c.close()
        srv.stop()

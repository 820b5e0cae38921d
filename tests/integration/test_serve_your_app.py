"""`snorky-sync serve module:app`, the gunicorn config shipped in the package, and a blocked
event loop seen (gevent's monitor: a log line with the stack, snorky_hub_blocked_total)."""
import socket
import subprocess
import sys

import pytest
import requests

import snorky_sync
from support.servers import API_KEY, ROOT, ServerProcess, free_port, sigterm_closes_every_client, wait_metric
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

APP = '''
import os

from gevent import monkey

PATCHED_AT_IMPORT = monkey.is_module_patched("socket") and monkey.is_module_patched("time")
REAL_SLEEP = monkey.get_original("time", "sleep")  # blocks the whole event loop, patched or not

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command


class Tools(RPCService):
    @rpc_command
    def patched(self, req):
        return PATCHED_AT_IMPORT

    @rpc_command
    def ping(self, req):
        return "pong"

    @rpc_command
    def block(self, req, seconds):
        REAL_SLEEP(seconds)
        return "done"


app = Flask(__name__)


@app.get("/")
def index():
    return "my own app"


registry = ServiceRegistry()
registry.register_service(Tools("tools"))
snorky = Snorky(app)
snorky.websocket("/ws", registry)
snorky.metrics("/metrics", api_key=os.environ["SNORKY_API_KEY"])
'''


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "myapp.py").write_text(APP)
    return tmp_path


def serve_cli(app_dir, env=None):
    port = free_port()
    return ServerProcess(args=["-m", "snorky_sync", "serve", "myapp:app", "--port", str(port)],
                         port=port, cwd=app_dir, env=env)


def serve_gunicorn(app_dir, env=None):
    port = free_port()
    return ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-c", "python:snorky_sync.gunicorn_conf",
                               "myapp:app"], port=port, cwd=app_dir, env=env)


def run_cli(*args, cwd=ROOT, env=None, timeout=60):
    import os
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "snorky_sync", *args], cwd=str(cwd), env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_serve_names_an_app_importable_from_the_current_directory(app_dir):
    srv = serve_cli(app_dir)
    try:
        assert requests.get(srv.url + "/", timeout=5).text == "my own app"  # the app named, not the default
        c = SnorkyTestClient(srv.ws_url + "/ws")
        assert c.ok("tools", "patched") is True  # monkey-patched before the app was imported
        assert c.ok("tools", "ping") == "pong"
        c.close()
        assert "not monkey-patched" not in srv.log()
    finally:
        srv.stop()


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"snorky-sync {snorky_sync.__version__}"


def test_port_in_use_is_one_line_and_a_failure(app_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (["serve", "--port", str(port)], ["serve", "myapp:app", "--port", str(port)]):
            out = run_cli(*args, cwd=app_dir, env={"SNORKY_API_KEY": API_KEY})
            assert out.returncode == 1
            assert "Traceback" not in out.stderr
            errors = [line for line in out.stderr.splitlines() if "error" in line]
            assert errors == [f"snorky-sync: error: cannot listen on 127.0.0.1:{port}: the address is "
                              "already in use (another server?); choose another port with --port or SNORKY_PORT"]


def _shim(tmp_path, module):
    """A directory whose ``module`` fails to import as if it were not installed."""
    shim = tmp_path / "shim"
    (shim / module).mkdir(parents=True)
    (shim / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    return str(shim)


def test_without_the_demos_extra_the_default_app_serves_without_demos(tmp_path):
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                        env={"PYTHONPATH": _shim(tmp_path, "sqlalchemy")})
    try:
        # the extra's own requirement: snorky_sync is not on PyPI, "snorky_sync[demos]" would not install
        assert 'demos skipped: No module named \'sqlalchemy\'; pip install "flask-sqlalchemy>=3.1"' in srv.log()
        index = requests.get(srv.url + "/", timeout=5)
        assert index.status_code == 200 and 'pip install "flask-sqlalchemy>=3.1"' in index.text
        assert requests.get(srv.url + "/demos/chat", timeout=5).status_code == 404
        c = SnorkyTestClient(srv.ws_url + "/ws")
        c.ok("pubsub", "subscribe", {"channel": "plain"})
        c.ok("pubsub", "publish", {"channel": "plain", "message": 1})
        assert c.next_notification()["message"]["message"] == 1
        c.close()
    finally:
        srv.stop()


def test_an_app_needing_a_missing_extra_or_not_found_is_one_line(tmp_path):
    (tmp_path / "needsredis.py").write_text("import redis\napp = None\n")
    out = run_cli("serve", "needsredis:app", cwd=tmp_path, env={"PYTHONPATH": _shim(tmp_path, "redis")})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("snorky-sync: error: No module named 'redis': install it with "
                                  'pip install "redis[hiredis]>=5"')
    out = run_cli("serve", "nosuchmodule:app", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("snorky-sync: error: cannot import 'nosuchmodule'")
    (tmp_path / "noapp.py").write_text("application = None\n")
    out = run_cli("serve", "noapp", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "snorky-sync: error: module 'noapp' has no attribute 'app'"


def test_shipped_gunicorn_config_closes_websockets_with_1001(app_dir):
    srv = serve_gunicorn(app_dir, env={"SNORKY_GRACEFUL_TIMEOUT": "10"})
    clients = []
    try:
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(5)]
        for c in clients:
            assert c.ok("tools", "patched") is True
        sigterm_closes_every_client(srv, clients)
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_the_top_level_config_is_the_packaged_one():
    sys.path.insert(0, str(ROOT))
    try:
        import runpy
        top = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        sys.path.remove(str(ROOT))
    from snorky_sync import gunicorn_conf
    for name in gunicorn_conf.__all__:
        assert top[name] == getattr(gunicorn_conf, name), name


@pytest.mark.parametrize("how", ["serve", "gunicorn"])
def test_a_blocking_command_is_logged_with_its_stack_and_counted(app_dir, how):
    srv = (serve_cli if how == "serve" else serve_gunicorn)(app_dir, env={"SNORKY_MAX_BLOCKING_TIME": "0.2"})
    try:
        blocker, other = SnorkyTestClient(srv.ws_url + "/ws"), SnorkyTestClient(srv.ws_url + "/ws")
        assert blocker.ok("tools", "block", {"seconds": 1.0}) == "done"
        assert other.ok("tools", "ping") == "pong"
        wait_for(lambda: "the event loop was blocked" in srv.log(), what="the monitor's log line")
        log = srv.log()
        line = log[log.index("the event loop was blocked"):]
        assert "SNORKY_MAX_BLOCKING_TIME=0.2" in line
        assert "myapp.py" in line and "REAL_SLEEP(seconds)" in line  # the blocking greenlet's stack
        # one block of ~1 s: one count (gevent's monitor reported it about 4 times)
        assert wait_metric(srv, "snorky_hub_blocked_total", 1) == 1
        assert log.count("the event loop was blocked") == 1
        assert "not monkey-patched" not in log
        blocker.close()
        other.close()
    finally:
        srv.stop()


def test_serve_in_a_process_not_monkey_patched_warns():
    srv = ServerProcess("embedded", app="tests.integration.testapp:app")  # serve() without patch_all()
    try:
        wait_for(lambda: "not monkey-patched" in srv.log(), what="the warning")
        assert "monkey.patch_all()" in srv.log()
    finally:
        srv.stop()


def test_shipped_gunicorn_config_warns_in_a_worker_not_monkey_patched(app_dir):
    srv = serve_gunicorn(app_dir, env={"SNORKY_WORKER_CLASS": "sync"})
    try:
        wait_for(lambda: "not monkey-patched" in srv.log(), what="the warning")
    finally:
        srv.stop()


def test_monitor_can_be_turned_off(app_dir):
    srv = serve_cli(app_dir, env={"SNORKY_MAX_BLOCKING_TIME": "0"})
    try:
        c = SnorkyTestClient(srv.ws_url + "/ws")
        assert c.ok("tools", "block", {"seconds": 0.5}) == "done"
        c.close()
        text = requests.get(srv.url + "/metrics", headers={"X-Backend-Key": API_KEY}, timeout=5).text
        assert "snorky_hub_blocked_total" not in text
    finally:
        srv.stop()


"""`python -m snorky_sync serve`, the `snorky-sync` script, and the default app's pages."""
import shutil
import sys

import pytest
import requests

from support.servers import API_KEY, ServerProcess, free_port
from support.wsclient import SnorkyTestClient


def _check_default_app(srv, demos=True):
    if demos:  # `serve` turns the demos on; gunicorn's wsgi:app does not
        assert "snorky_sync demos" in requests.get(srv.url + "/", timeout=5).text
        assert "PubSub demo" in requests.get(srv.url + "/demos/pubsub", timeout=5).text
    assert requests.get(srv.url + "/static/snorky.js", timeout=5).text.startswith("/*! snorky.js")
    assert requests.get(srv.url + "/healthz", timeout=5).json()["status"] == "ok"
    c = SnorkyTestClient(srv.ws_url + "/ws")
    c.ok("pubsub", "subscribe", {"channel": "cli"})
    r = srv.post_backend("pubsub_backend", {"command": "publish", "params": {"channel": "cli", "message": "m"}, "callId": 1})
    assert r.status_code == 200
    assert c.recv()["message"] == {"type": "message", "channel": "cli", "message": "m"}
    c.close()


def test_python_dash_m_serve_with_host_and_port():
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--host", "127.0.0.1", "--port", str(port)],
                        port=port, env={"SNORKY_PORT": "1"})  # the flag wins over the setting
    try:
        _check_default_app(srv)
    finally:
        srv.stop()


def test_console_script_and_backend_off_without_key():
    script = shutil.which("snorky-sync") or str(__import__("pathlib").Path(sys.executable).parent / "snorky-sync")
    port = free_port()
    srv = ServerProcess(args=["-c", f"import sys; sys.argv=['snorky-sync', 'serve', '--port', '{port}'];"
                              f"exec(open({script!r}).read())"], env={"SNORKY_API_KEY": ""}, port=port)
    try:
        r = srv.post_backend("pubsub_backend", {"command": "publish", "params": {}})
        assert r.status_code == 404  # not mounted
        assert "SNORKY_API_KEY is not set" in srv.log()
    finally:
        srv.stop()


def test_gunicorn_with_the_shipped_config():
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"],
                        port=port)
    try:
        _check_default_app(srv, demos=False)
    finally:
        srv.stop()


def test_short_api_key_is_refused():
    import pytest
    from flask import Flask

    from snorky_sync import ServiceRegistry, Snorky
    with pytest.raises(ValueError, match="at least 16"):
        Snorky(Flask("x")).backend("/backend", ServiceRegistry(), api_key="short")


def test_metrics_need_the_key_and_count_connections():
    srv = ServerProcess("embedded", app="wsgi:app")
    try:
        assert requests.get(srv.url + "/metrics", timeout=5).status_code == 401
        assert requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(3)]
        clients[0].ok("pubsub", "subscribe", {"channel": "m"})
        clients[0].send_raw("garbage")
        clients[1].ok("pubsub", "publish", {"channel": "m", "message": 1})
        clients[0].recv()
        assert clients[1].call("pubsub", "unsubscribe", {"channel": "m"})["type"] == "error"
        text = requests.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5).text
        assert "snorky_websockets_open 3.0" in text
        assert 'snorky_rpc_errors_total{command="unsubscribe",service="pubsub"} 1.0' in text
        assert "snorky_frames_invalid_total 1.0" in text
        assert 'snorky_rpc_calls_total{command="subscribe",service="pubsub"} 1.0' in text
        assert 'snorky_rpc_calls_total{command="publish",service="pubsub"} 1.0' in text
        assert 'snorky_broker_state{state="local"} 1.0' in text
        assert "snorky_bytes_in_total" in text and "snorky_bytes_out_total" in text
        assert requests.get(srv.url + "/healthz", timeout=5).json() == {
            "status": "ok", "connections": 3, "broker": {"broker": "LocalBroker", "state": "local"}}
        for c in clients:
            c.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["embedded", "gunicorn"])
def test_backend_only_on_its_private_port(how):
    port, private = free_port(), free_port()
    env = {"SNORKY_BACKEND_PORT": str(private)}
    if how == "embedded":
        args = ["-m", "snorky_sync", "serve", "--port", str(port)]
    else:
        args = ["-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"]
    srv = ServerProcess(args=args, port=port, env=env)
    try:
        body = {"service": "pubsub_backend", "message": {"command": "publish", "params": {"channel": "x", "message": 1}}}
        headers = {"X-Backend-Key": API_KEY}
        public = requests.post(srv.url + "/backend", json=body, headers=headers, timeout=5)
        assert public.status_code == 404
        # a forged Host header does not help
        forged = requests.post(srv.url + "/backend", json=body, timeout=5,
                               headers={**headers, "Host": f"127.0.0.1:{private}"})
        assert forged.status_code == 404
        assert requests.get(srv.url + "/metrics", headers=headers, timeout=5).status_code == 404
        ok = requests.post(f"http://127.0.0.1:{private}/backend", json=body, headers=headers, timeout=5)
        assert ok.status_code == 200 and ok.json()["message"]["type"] == "response"
        assert requests.get(f"http://127.0.0.1:{private}/metrics", headers=headers, timeout=5).status_code == 200
    finally:
        srv.stop()


def test_serve_no_demos_and_wsgi_default_have_no_demo_pages():
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port), "--no-demos"], port=port)
    try:
        assert requests.get(srv.url + "/demos/token?name=x", timeout=5).status_code == 404
        assert "SNORKY_DEMOS=1" in requests.get(srv.url + "/", timeout=5).text
    finally:
        srv.stop()
    srv = ServerProcess("embedded", app="wsgi:app")  # gunicorn's app: demos only when asked
    try:
        assert requests.get(srv.url + "/demos/chat", timeout=5).status_code == 404
        assert requests.get(srv.url + "/static/snorky.js", timeout=5).status_code == 200
    finally:
        srv.stop()


def test_demo_token_and_todo_api_refuse_bad_input():
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                        env={"SNORKY_DEMO_DATABASE_URL": "sqlite://"})
    try:
        assert requests.get(srv.url + "/demos/token?name=", timeout=5).status_code == 400
        assert requests.get(srv.url + "/demos/token?name=" + "x" * 41, timeout=5).status_code == 400
        api = srv.url + "/demos/todos/api"
        assert requests.post(api, json={"title": "  "}, timeout=5).status_code == 400
        assert requests.post(api, json={"nope": 1}, timeout=5).status_code == 400
        todo = requests.post(api, json={"title": "t"}, timeout=5).json()
        assert requests.patch(f"{api}/{todo['id']}", json={"completed": "yes"}, timeout=5).status_code == 400
        assert requests.patch(f"{api}/999999", json={"completed": True}, timeout=5).status_code == 404
        assert requests.delete(f"{api}/999999", timeout=5).status_code == 404
        token = requests.get(srv.url + "/demos/token?name=ann", timeout=5).json()["token"]
        c = SnorkyTestClient(srv.ws_url + "/ws?token=" + token)
        assert c.ok("chat", "join", {"channel": "c"}) == {"members": ["ann"]}
        c.close()
    finally:
        srv.stop()

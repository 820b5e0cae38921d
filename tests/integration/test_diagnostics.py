"""Mistakes say what to do, and a mounted app's log is visible (issue #22 items 6, 7).

A user's own app (diagnostics_app.py: its own RPC service,
``snorky_sync.configure_logging()``) under the embedded server and gunicorn:

* a call to an unknown service is logged with the registered names; an
  unknown command, a method without ``@rpc_command`` and wrong params are
  logged at DEBUG with the call and what is wrong; the wire texts stay 0.1's;
* a command holding its service's lock past SNORKY_SLOW_COMMAND_TIME is
  named in a warning and counted in /metrics;
* WebSocket open and close at DEBUG (who, path, close code); a peer that
  resets mid-request is a DEBUG line, not a traceback;
* under gunicorn, INFO lines of the app reach gunicorn's log in its format;
* ``app.run()`` (Flask's dev server): the handshake's 500 is logged as an
  ERROR naming the fix, once.
"""
from __future__ import annotations

import json
import re
import socket
import struct

import pytest
import requests

from support.rawws import handshake, text_frame
from support.servers import ServerProcess, free_port, serving, wait_metric
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

APP = "tests.integration.diagnostics_app:app"


def wait_log(srv: ServerProcess, pattern: str, timeout: float = 10.0) -> re.Match:
    """Poll the server's log until ``pattern`` (a regex) appears in it: a log
    line is only visible there."""
    return wait_for(lambda: re.search(pattern, srv.log()), timeout, f"{pattern!r} in the log")


@pytest.fixture(scope="module", params=["embedded", "gunicorn-gevent"])
def server(request):
    yield from serving(request, request.param, APP, {"SNORKY_SLOW_COMMAND_TIME": "0.3"})


@pytest.fixture
def client(server):
    c = SnorkyTestClient(server.ws_url + "/ws")
    yield c
    c.close()


def test_unknown_service_is_logged_with_the_registered_names(server, client):
    client.send("nots", {"command": "addNote", "params": {"title": "x"}, "callId": 1})
    # 0.1's wire: no answer (the next call's answer is the next message)
    assert client.answers_next("notes", "addNote", {"title": "marker"})["data"]["title"] == "marker"
    line = wait_log(server, r".*unknown service 'nots'.*").group(0)
    assert "registered services: notes" in line and "WARNING" in line, line


def test_unknown_service_name_is_escaped(server, client):
    client.send("evil\x1b[31m\nFORGED", {"command": "x", "params": {}, "callId": 1})
    line = wait_log(server, r".*unknown service 'evil.*").group(0)
    assert "unknown service 'evil\\x1b[31m\\x0aFORGED', dropped" in line, line
    assert not re.search(r"^FORGED", server.log(), re.M)


def test_unknown_command_is_logged_at_debug_with_the_call(server, client):
    assert client.call("notes", "addNotes", {"title": "t", "body": "b"})["message"] == "Unknown command"
    line = wait_log(server, r".*notes\.addNotes\(.*").group(0)
    assert "DEBUG" in line and "Unknown command" in line, line
    assert "notes.addNotes(title, body)" in line, line          # the param names, not the values
    assert "its commands: addNote, hold" in line, line


def test_method_without_rpc_command_is_named(server, client):
    assert client.call("notes", "forgotten", {})["message"] == "Unknown command"
    line = wait_log(server, r".*notes\.forgotten\(.*").group(0)
    assert "Notes.forgotten is a method not declared with @rpc_command" in line, line


def test_invalid_params_say_what_is_wrong(server, client):
    assert client.call("notes", "addNote", {"titel": "t", "secret": "s3cr3t"})["message"] == "Invalid params"
    line = wait_log(server, r".*notes\.addNote\(titel, secret\).*").group(0)
    assert "DEBUG" in line and "Invalid params" in line, line
    assert "missing title; unexpected secret, titel (it takes: body, title)" in line, line
    assert "s3cr3t" not in server.log()  # values are not logged
    assert client.call("notes", "addNote", ["t"])["message"] == "Invalid params"
    wait_log(server, r"notes\.addNote\(a JSON array\).*params is a JSON array, not an object")


def test_slow_command_is_named_and_counted(server, client):
    before = wait_metric(server, "snorky_slow_commands_total", 0)
    assert client.ok("notes", "hold", {"seconds": 0.05}) == 0.05  # under the 0.3 s threshold
    assert client.ok("notes", "hold", {"seconds": 0.5}) == 0.5
    line = wait_log(server, r".*notes\.hold held the service's lock for .*").group(0)
    held = float(re.search(r"for (\d+\.\d+) s", line).group(1))
    assert "WARNING" in line and 0.45 <= held < 5, line
    assert "SNORKY_SLOW_COMMAND_TIME 0.3 s" in line and "lock=False" in line, line
    assert wait_metric(server, "snorky_slow_commands_total", before + 1) == before + 1
    assert server.log().count("held the service's lock") == 1


def test_websocket_open_and_close_at_debug(server):
    c = SnorkyTestClient(server.ws_url + "/ws")
    assert c.ok("notes", "addNote", {"title": "x"}) == {"title": "x", "body": ""}
    opened = wait_log(server, r".*WebSocket #(\d+) open from 127\.0\.0\.1:\d+ at /ws.*")
    assert "DEBUG" in opened.group(0)
    conn = opened.group(1)
    c.close()
    closed = wait_log(server, rf".*WebSocket #{conn} from 127\.0\.0\.1:\d+ closed: .*").group(0)
    assert "code 1000" in closed and "closed by the peer" in closed, closed

    s, head = handshake(server.port)  # then reset: no close frame
    assert head.startswith(b"HTTP/1.1 101")
    s.sendall(text_frame({"service": "notes", "message": {"command": "addNote", "params": {"title": "y"},
                                                           "callId": 1}}))
    s.recv(4096)
    reset = _reset(s)
    conn = wait_log(server, rf".*WebSocket #(\d+) open from 127\.0\.0\.1:{reset} at /ws").group(1)
    line = wait_log(server, rf".*WebSocket #{conn} from .* closed: .*").group(0)
    assert "code 1006" in line, line


def _reset(s: socket.socket) -> int:
    """Close ``s`` with a TCP reset; its local port."""
    port = s.getsockname()[1]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return port


@pytest.mark.parametrize("mode", ["embedded", "gunicorn-geventwebsocket"])
def test_a_reset_mid_request_is_a_debug_line_not_a_traceback(mode):
    """gevent's pywsgi (embedded server, gevent-websocket worker) printed the
    read's ConnectionResetError with a traceback, then another for the 400 it
    wrote to the gone socket."""
    srv = ServerProcess(mode, app=APP)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0")
        wait_log(srv, r"diagnostics app loaded")
        # the head is in the server's socket buffer; the reset follows it
        _reset(s)
        line = wait_log(srv, r".*connection reset by the peer during a request.*").group(0)
        assert "DEBUG" in line, line
        # the server serves on, and nothing else was said about it
        assert requests.get(srv.url + "/metrics", headers={"X-Backend-Key": "x"}, timeout=5).status_code == 401
        log = srv.log()
        assert "Traceback" not in log and "Invalid request" not in log, log[-3000:]
        assert all("DEBUG" in line for line in log.splitlines() if "reset by peer" in line), log[-3000:]
    finally:
        srv.stop()


def test_gunicorn_gets_the_apps_info_lines_in_its_format():
    """Without configure_logging a mounted app's INFO was dropped under gunicorn
    and its warnings came out bare (Python's last-resort handler)."""
    srv = ServerProcess("gunicorn-gevent", app=APP, env={"APP_LOG_LEVEL": "INFO"})
    try:
        line = wait_log(srv, r".*diagnostics app loaded \(pid (\d+)\).*")
        assert re.match(rf"\[[^]]+\] \[{line.group(1)}\] \[INFO\] diagnostics app loaded", line.group(0)), \
            line.group(0)
        c = SnorkyTestClient(srv.ws_url + "/ws")
        c.send("nope", {"command": "x", "params": {}, "callId": 1})
        warning = wait_log(srv, r".*unknown service 'nope'.*").group(0)
        assert re.match(r"\[[^]]+\] \[\d+\] \[WARNING\] message from ", warning), warning
        assert c.call("notes", "nope", {})["message"] == "Unknown command"
        c.close()
        srv.stop()
        log = srv.log()
        assert "Unknown command: " not in log and "WebSocket #" not in log  # DEBUG is off
    finally:
        srv.stop()


def test_json_lines_under_gunicorn():
    """json=True: the app's lines and gunicorn's own (once the app is loaded)
    are JSON, one format on the stream."""
    srv = ServerProcess("gunicorn-gevent", app=APP, env={"APP_LOG_LEVEL": "INFO", "APP_LOG_JSON": "1"})
    try:
        line = wait_log(srv, r".*diagnostics app loaded.*").group(0)
        record = json.loads(line)
        assert record["level"] == "INFO" and record["logger"] == "diagnostics_app", record
    finally:
        srv.stop()
    exiting = re.search(r".*Worker exiting.*", srv.log())
    assert exiting, srv.log()
    record = json.loads(exiting.group(0))
    assert record["logger"] == "gunicorn.error" and record["level"] == "INFO", record


def test_flask_dev_server_500_is_logged_with_the_fix():
    port = free_port()
    srv = ServerProcess("embedded", args=["tests/integration/diagnostics_app.py"], port=port,
                        env={"APP_LOG_LEVEL": "INFO", "PYTHONPATH": "."})
    try:
        for _ in range(3):
            s, head = handshake(port)
            s.close()
            assert head.startswith(b"HTTP/1.1 500"), head
        line = wait_log(srv, r".*WebSocket /ws answered 500.*").group(0)
        assert "ERROR" in line and "Flask's development server (app.run() / flask run)" in line, line
        assert "python -m snorky_sync serve module:app" in line and "gunicorn -k gevent" in line, line
        assert srv.log().count("answered 500") == 1  # once, not per request
    finally:
        srv.stop()

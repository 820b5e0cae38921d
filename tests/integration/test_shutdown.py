"""SIGTERM: every WebSocket gets a 1001 close frame and the server exits, under every server kind."""
import socket

import pytest

from support.servers import WORKER_CLASSES, ServerProcess, free_port, sigterm_closes_every_client
from support.wsclient import SnorkyTestClient


def start(mode):
    if mode == "embedded":
        return ServerProcess("embedded", app="tests.integration.testapp:app")
    port = free_port()
    return ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py",
                               "tests.integration.testapp:app"], port=port,
                         env={"SNORKY_WORKER_CLASS": WORKER_CLASSES[mode], "SNORKY_GRACEFUL_TIMEOUT": "10"})


@pytest.mark.parametrize("mode", list(WORKER_CLASSES))
def test_sigterm_closes_every_websocket_with_1001(mode):
    srv = start(mode)
    clients = []
    try:
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(20)]
        for c in clients:
            c.ok("pubsub", "subscribe", {"channel": "shutdown"})
        sigterm_closes_every_client(srv, clients, reason=b"Server shutting down")
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_gunicorn_sigterm_closes_websockets_while_a_keep_alive_connection_is_idle():
    """The shipped config: a worker told to stop closes its WebSockets with 1001
    at once.  gunicorn's gevent worker first waits for its HTTP connections,
    an idle keep-alive one (a browser keeps the page's) until its keep-alive
    (5 s), before the worker_exit hook runs; with SNORKY_GRACEFUL_TIMEOUT 3 the
    arbiter killed the worker first, and the pages saw 1006, not 1001."""
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-c", "python:snorky_sync.gunicorn_conf",
                              "tests.integration.testapp:app"], port=port,
                        env={"SNORKY_WORKERS": "1", "SNORKY_GRACEFUL_TIMEOUT": "3", "SNORKY_KEEPALIVE_TIMEOUT": "5"})
    clients = []
    try:
        clients = [SnorkyTestClient(srv.ws_url + "/ws") for _ in range(3)]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:  # the page's own HTTP connection
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200"), "kept alive, idle from now on"
            sigterm_closes_every_client(srv, clients, reason=b"Server shutting down")
    finally:
        for c in clients:
            c.close()
        srv.stop()

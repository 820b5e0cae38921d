"""SIGTERM: every WebSocket gets a 1001 close frame and the server exits, under every server kind."""
import signal

import pytest
import websocket

from support.servers import WORKER_CLASSES, ServerProcess, free_port
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
        srv.proc.send_signal(signal.SIGTERM)
        for c in clients:
            c.ws.settimeout(15)
            opcode, data = c.ws.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_CLOSE
            assert int.from_bytes(data[:2], "big") == 1001
            assert data[2:] == b"Server shutting down"
        assert srv.proc.wait(20) == 0
    finally:
        for c in clients:
            c.close()
        srv.stop()

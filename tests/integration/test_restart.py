"""A restart under live clients: all get 1001, the next process takes the port,
they reconnect, restore their subscriptions and receive again."""
import time

import pytest
import websocket

from support.servers import ServerProcess, free_port, sigterm_closes_every_client
from support.wsclient import SnorkyTestClient


class ReconnectingClient:
    """What a real client (snorky.js) does: on close, reconnect with backoff and resubscribe."""

    def __init__(self, url, channel):
        self.url, self.channel = url, channel
        self.c = None
        self.connect()

    def connect(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                self.c = SnorkyTestClient(self.url)
                self.c.ok("pubsub", "subscribe", {"channel": self.channel})
                return
            except (ConnectionError, OSError, websocket.WebSocketException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)  # backoff between reconnection attempts, as a client does
                delay = min(delay * 2, 0.5)


@pytest.mark.parametrize("how", ["embedded", "gunicorn"])
def test_restart_under_live_clients(how):
    port = free_port()
    if how == "embedded":
        args = ["-m", "snorky_sync", "serve", "--port", str(port)]
    else:
        args = ["-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"]
    first = ServerProcess(args=args, port=port)
    clients = []
    second = None
    try:
        clients = [ReconnectingClient(first.ws_url + "/ws", "restart") for _ in range(30)]
        # all get 1001 and the process exits well before gunicorn's graceful timeout would kill it
        sigterm_closes_every_client(first, [c.c for c in clients], timeout=20)
        second = ServerProcess(args=args, port=port)
        for c in clients:
            c.c.close()
            c.connect()
        publisher = SnorkyTestClient(second.ws_url + "/ws")
        publisher.ok("pubsub", "publish", {"channel": "restart", "message": "after restart"})
        for c in clients:
            assert c.c.recv()["message"] == {"type": "message", "channel": "restart", "message": "after restart"}
        publisher.close()
    finally:
        for c in clients:
            if c.c:
                c.c.close()
        first.stop()
        if second:
            second.stop()

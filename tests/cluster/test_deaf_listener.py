"""A worker whose Redis connections go silent without closing (a half-open TCP
connection, a frozen NAT entry) notices within the expiry and reconnects: it
does not stay deaf.  Between that worker and a real redis-server sits a TCP
relay that can freeze its open connections (they stay open, nothing passes)."""
import socket
import threading

from support.servers import ServerProcess, free_port, wait_metric

from .conftest import wait_broker


class FreezingRelay:
    """TCP relay to Redis; ``freeze()`` turns the connections open now into black holes."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.frozen: set = set()
        self.conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            pair = (down, up)
            self.conns.append(pair)
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src, dst, pair):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if pair in self.frozen:
                continue  # swallowed: the sender's writes succeed, nothing arrives
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self):
        self.frozen.update(self.conns)

    def close(self):
        self.listener.close()
        for down, up in self.conns:
            for s in (down, up):
                try:
                    s.close()
                except OSError:
                    pass


def test_a_worker_whose_redis_connections_go_silent_reconnects(redis_server, connect):
    relay = FreezingRelay(redis_server.port)
    env = {"SNORKY_CLUSTER_HEARTBEAT": "0.2", "SNORKY_CLUSTER_EXPIRY": "1.5"}
    servers = []
    try:
        for url in (f"redis://127.0.0.1:{relay.port}/0", redis_server.url):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": url, **env})
            servers.append(srv)
            wait_broker(srv)
        deaf, other = servers
        listener = connect(deaf)
        listener.ok("pubsub", "subscribe", {"channel": "c"})
        publisher = connect(other)
        publisher.ok("pubsub", "publish", {"channel": "c", "message": "before"})
        assert listener.wait_for(lambda m: m.get("type") == "message")["message"] == "before"

        relay.freeze()                                   # the worker's connections go silent
        wait_metric(deaf, "snorky_broker_deaf_reconnects_total", 1, timeout=30)  # it noticed it was deaf
        wait_broker(deaf)                                # reconnected (through fresh connections)
        publisher.ok("pubsub", "publish", {"channel": "c", "message": "after"})
        assert listener.wait_for(lambda m: m.get("type") == "message", timeout=20)["message"] == "after"
    finally:
        for srv in servers:
            srv.stop()
        relay.close()

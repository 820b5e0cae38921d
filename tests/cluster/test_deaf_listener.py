"""A worker whose Redis connections go silent without closing (a half-open TCP
connection, a frozen NAT entry) notices within the expiry and reconnects: it
does not stay deaf.  Between that worker and a real redis-server sits a TCP
relay that can freeze its open connections (they stay open, nothing passes)."""
from support.redis_relay import RedisRelay
from support.servers import ServerProcess, free_port, wait_metric

from .conftest import wait_broker


def test_a_worker_whose_redis_connections_go_silent_reconnects(redis_server, connect):
    relay = RedisRelay(redis_server.port)
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
        assert listener.next_message("c") == "before"

        assert relay.freeze()                            # the worker's connections go silent
        wait_metric(deaf, "snorky_broker_deaf_reconnects_total", 1, timeout=30)  # it noticed it was deaf
        wait_broker(deaf)                                # reconnected (through fresh connections)
        publisher.ok("pubsub", "publish", {"channel": "c", "message": "after"})
        assert listener.next_message("c", timeout=20) == "after"
    finally:
        for srv in servers:
            srv.stop()
        relay.close()

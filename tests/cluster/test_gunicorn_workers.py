"""gunicorn -k gevent -w 2 with Redis: clients on different workers see one server."""
import pytest

from support.servers import ServerProcess, free_port
from support.wsclient import SnorkyTestClient


@pytest.mark.parametrize("worker_class", ["gevent", "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"])
def test_publish_reaches_subscribers_on_every_worker(redis_server, worker_class):
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-k", worker_class, "-w", "2",
                              "-b", f"127.0.0.1:{port}", "tests.integration.testapp:app"],
                        port=port, env={"SNORKY_REDIS_URL": redis_server.url})
    clients = []
    try:
        by_pid = {}
        for _ in range(200):  # the kernel spreads connections; keep going until both workers have some
            c = SnorkyTestClient(srv.ws_url + "/ws")
            clients.append(c)
            by_pid.setdefault(c.ok("inspect", "state")["pid"], []).append(c)
            if len(by_pid) == 2 and min(len(v) for v in by_pid.values()) >= 2:
                break
        assert len(by_pid) == 2, "connections never reached the second worker"
        subs = [c for group in by_pid.values() for c in group[:2]]
        for c in subs:
            c.ok("pubsub", "subscribe", {"channel": "w"})
        publisher = next(iter(by_pid.values()))[-1]
        for i in range(50):
            publisher.send("pubsub", {"command": "publish", "params": {"channel": "w", "message": i}})
        for c in subs:
            got = []
            while len(got) < 50:
                msg = c.recv()["message"]
                if msg.get("type") == "message":
                    got.append(msg["message"])
            assert got == list(range(50))
    finally:
        for c in clients:
            c.close()
        srv.stop()

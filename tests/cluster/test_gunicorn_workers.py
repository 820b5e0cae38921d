"""gunicorn -k gevent -w 2 with Redis: clients on different workers see one server."""
import pytest

from support.servers import ServerProcess, free_port
from support.waiting import attempts
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
        for _ in attempts():  # the kernel spreads connections; keep going until both workers have some
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


def test_chat_messaging_cursors_span_gunicorn_workers(redis_server):
    """One identity per worker: presence, members, messages, names and cursors as one server."""
    port = free_port()
    srv = ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-k", "gevent", "-w", "2",
                              "-b", f"127.0.0.1:{port}", "tests.integration.testapp:app"],
                        port=port, env={"SNORKY_REDIS_URL": redis_server.url})
    import requests
    clients = []
    try:
        by_pid = {}
        for i in range(200):
            token = requests.get(f"{srv.url}/token/u{i}", timeout=10).text
            c = SnorkyTestClient(srv.ws_url + "/ws-token?token=" + token)
            clients.append(c)
            pid = c.ok("inspect", "state")["pid"]
            if pid not in by_pid:
                by_pid[pid] = (c, {"user": f"u{i}"})
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2, "connections never reached the second worker"
        (a, ida), (b, idb) = by_pid.values()
        assert a.ok("chat", "join", {"channel": "gw"})["members"] == [ida]
        # a's join was answered before b's was sent: b's worker knows it (broker barrier)
        members = {m["user"] for m in b.ok("chat", "join", {"channel": "gw"})["members"]}
        assert members == {ida["user"], idb["user"]}
        presence = a.wait_for(lambda m: m.get("type") == "presence")
        assert presence["from"] == idb and presence["status"] == "joined"
        b.ok("chat", "send", {"channel": "gw", "body": "across"})
        msg = a.wait_for(lambda m: m.get("type") == "message")
        assert (msg["from"], msg["body"]) == (idb, "across")

        a.ok("messaging", "registerParticipant", {"name": "gw-a"})
        assert "gw-a" in b.ok("messaging", "listParticipants")
        assert b.call("messaging", "registerParticipant", {"name": "gw-a"})["message"] == "Name already registered"
        b.ok("messaging", "registerParticipant", {"name": "gw-b"})
        b.ok("messaging", "send", {"sender": "gw-b", "dest": "gw-a", "body": 1})
        assert a.wait_for(lambda m: m.get("type") == "message" and "sender" in m)["sender"] == "gw-b"

        a.ok("cursors", "join", {"document": "gd"})
        ha = a.ok("cursors", "createCursor", {"privateHandle": 1, "document": "gd", "position": 0, "status": None})
        seen = b.ok("cursors", "join", {"document": "gd"})["cursors"]  # created on a's worker just before
        assert [(c["publicHandle"], c["owner"]) for c in seen] == [(ha, ida)]
        hb = b.ok("cursors", "createCursor", {"privateHandle": 1, "document": "gd", "position": 1, "status": None})
        assert hb != ha

        b.close()  # b's worker tells a's: b left
        left = a.wait_for(lambda m: m.get("type") == "presence" and m.get("status") == "left")
        assert left["from"] == idb
    finally:
        for c in clients:
            c.close()
        srv.stop()

"""PubSub history under fire, one process: pages cut abruptly at random points while
two publishers run, each coming back with ``since``; every page ends with every
message exactly once, in order."""
import random
import socket
import threading

import pytest

from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient

PAGES = 5
PER_PUBLISHER = 300


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess("embedded", app="tests.integration.testapp:app",
                        env={"SNORKY_PUBSUB_HISTORY_SIZE": "5000", "SNORKY_RATE_LIMIT": "0"})
    yield srv
    srv.stop()


def cut(client):
    """Drop the TCP connection without a close frame (a lost network)."""
    try:
        client.ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    client.ws.sock.close()


def test_random_cuts_while_publishing_lose_and_repeat_nothing(server):
    first = SnorkyTestClient(server.ws_url + "/ws")
    epoch = first.ok("pubsub", "subscribe", {"channel": "chaos"})["epoch"]
    first.close()
    total = 2 * PER_PUBLISHER
    results, errors = {}, []

    def page(n):
        rng = random.Random(n)
        got = []
        try:
            while len(got) < total:
                c = SnorkyTestClient(server.ws_url + "/ws", timeout=20)
                last = got[-1] if got else 0
                c.send("pubsub", {"command": "subscribe", "callId": 1, "params": {
                    "channel": "chaos", "since": {"offset": last, "epoch": epoch}}})
                read_now = rng.randint(1, 120)     # then the network drops
                read = 0
                while read < read_now and len(got) < total:
                    msg = c.recv()["message"]
                    if msg.get("type") == "response":
                        assert msg["data"]["recovered"] is True, msg
                    elif msg.get("type") == "message":
                        got.append(msg["offset"])
                        read += 1
                cut(c)
            results[n] = got
        except Exception as exc:  # reported below
            errors.append((n, exc))

    def publisher(k):
        p = SnorkyTestClient(server.ws_url + "/ws")
        for i in range(PER_PUBLISHER):
            p.send("pubsub", {"command": "publish", "params": {"channel": "chaos", "message": [k, i]}})
        assert p.call("calc", "add", {"a": 1})["data"] == 1   # every publish before it was handled
        p.close()

    threads = [threading.Thread(target=page, args=(n,)) for n in range(PAGES)]
    threads += [threading.Thread(target=publisher, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for n in range(PAGES):
        assert results[n] == list(range(1, total + 1)), f"page {n}"

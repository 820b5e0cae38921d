"""A worker that is never idle still answers everyone (issue #21 item 2).

The flusher (and the reader's fairness wait, and the Redis outbox) waited
for ``gevent.idle()``: on a hub kept busy by other clients every loop
iteration has work, the idle moment never comes, and a victim's replies
stayed queued until the flood stopped (bench.attacks: no answer in 5 s while
10 keep-alive connections loaded the Todos API).  Now each waits for the
idle moment or a few milliseconds, whichever comes first
(``snorky_sync.hub.idle``).  Here, under every serving mode: threads keep
the worker busy with pipelined HTTP requests while a victim on a WebSocket
makes calls; each is answered within a generous timeout.
"""
from __future__ import annotations

import socket
import threading

from support.wsclient import SnorkyTestClient

THREADS = 6
PIPELINE = 64


def hammer(port: int, stop: threading.Event, served: list) -> None:
    """Keep-alive connections with PIPELINE requests in flight, until ``stop``."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINE
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                while not stop.is_set():
                    s.sendall(request)
                    got = 0
                    while got < PIPELINE:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            raise ConnectionError
                        got += chunk.count(b"HTTP/1.1 200")
                    served.append(got)
        except OSError:
            continue


def test_a_victim_is_answered_while_the_hub_is_never_idle(default_server):
    stop = threading.Event()
    served: list[int] = []
    threads = [threading.Thread(target=hammer, args=(default_server.port, stop, served), daemon=True)
               for _ in range(THREADS)]
    victim = SnorkyTestClient(f"{default_server.ws_url}/ws", timeout=15)
    try:
        for t in threads:
            t.start()
        while sum(served) < THREADS * PIPELINE * 4:  # the flood is under way
            stop.wait(0.05)  # polling the attackers' count, not a synchronisation of the server
        for i in range(5):
            answer = victim.call("pubsub", "publish", {"channel": "victim", "message": i})
            assert answer["type"] == "response", answer
        assert sum(served) > THREADS * PIPELINE * 4
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        victim.close()

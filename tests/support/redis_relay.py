"""A TCP relay between snorky_sync processes and a real redis-server that can
turn connections into black holes (open, nothing passes: a half-open TCP
connection, a frozen NAT entry), for the tests of deaf Redis listeners."""
from __future__ import annotations

import socket
import threading

from support.servers import socket_ports

__all__ = ["RedisRelay"]


class RedisRelay:
    """A TCP relay to Redis.  A connection that sent SUBSCRIBE is a worker's
    listener; ``freeze_listener(pid)`` makes that worker's listener a black
    hole (open, nothing passes: a half-open connection).  Either side closing
    closes both (Redis killed: the workers see their connections drop)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: dict[tuple, dict] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                up.settimeout(None)
            except OSError:      # Redis away: the worker sees its connection refused-ish
                down.close()
                continue
            pair = (down, up)
            with self.lock:
                self.pairs[pair] = {"listener": False, "frozen": False,
                                    "peer": down.getpeername()[1], "open": True}
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src, dst, pair):
        state = self.pairs[pair]
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if src is pair[0] and b"SUBSCRIBE" in data.upper():
                state["listener"] = True
            if state["frozen"]:
                continue  # swallowed: the sender's writes succeed, nothing arrives
            try:
                dst.sendall(data)
            except OSError:
                break
        state["open"] = False
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def listeners(self, pid: int) -> list[tuple]:
        ports = socket_ports(pid)
        with self.lock:
            return [p for p, s in self.pairs.items()
                    if s["listener"] and s["open"] and not s["frozen"] and s["peer"] in ports]

    def freeze_listener(self, pid: int) -> int:
        pairs = self.listeners(pid)
        for p in pairs:
            self.pairs[p]["frozen"] = True
        return len(pairs)

    def close(self):
        self.listener.close()
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            for s in pair:
                try:
                    s.close()
                except OSError:
                    pass

    def freeze(self) -> int:
        """Every connection open now becomes a black hole; how many."""
        with self.lock:
            pairs = [p for p, s in self.pairs.items() if s["open"] and not s["frozen"]]
            for p in pairs:
                self.pairs[p]["frozen"] = True
        return len(pairs)

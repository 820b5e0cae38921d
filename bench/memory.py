"""Worst-case memory of a worker: every connection a slow reader with a full backlog.

    python -m bench.memory                      # 2,000 trickling readers, default settings
    python -m bench.memory --clients 2000 --budget 536870912

Each client subscribes to one channel, then reads only 64 KB a second (enough
progress to never trip SNORKY_WRITE_TIMEOUT: the worst kind of client for
memory); a publisher sends 8 KB messages until every backlog has reached the
per-connection budget.  The server's RSS is sampled throughout.  Reports the
peak RSS growth, per connection, the bytes the server says it owes
(``snorky_outbound_bytes``) and the disconnects by cause.  The worst case
at the connection limit is then: RSS of N idle connections + min(process
budget, N x per-connection peak) (README "Limits and hostile clients").
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.servers import API_KEY, ServerProcess  # noqa: E402

from .quick import rss_kb  # noqa: E402


def _masked(obj) -> bytes:
    payload = json.dumps(obj).encode()
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _open(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return s


def _metrics(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"X-Backend-Key": API_KEY},
                        timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("snorky_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def measure(clients: int = 2000, env: dict | None = None, messages: int = 160,
            trickle: int = 65536, seconds: float = 40.0) -> dict:
    srv = ServerProcess("embedded", app="wsgi:app", env={"SNORKY_LOG_LEVEL": "WARNING", **(env or {})})
    socks: list[socket.socket] = []
    try:
        pid = srv.proc.pid
        base = rss_kb(pid)
        sub = _masked({"service": "pubsub", "message": {"command": "subscribe",
                                                        "params": {"channel": "m"}, "callId": 1}})
        for _ in range(clients):
            s = _open(srv.port, rcvbuf=65536)
            s.sendall(sub)
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            data = b""
            while b'"response"' not in data:
                data += s.recv(4096)
            s.setblocking(False)
        idle = rss_kb(pid)
        pub = _open(srv.port)
        frame = _masked({"service": "pubsub", "message": {"command": "publish", "params": {
            "channel": "m", "message": "x" * 8192}}})
        peak = idle
        peak_owed = 0
        t0 = time.monotonic()
        sent = 0
        next_read = t0
        while time.monotonic() - t0 < seconds:
            if sent < messages:
                pub.sendall(frame * 10)
                sent += 10
            if time.monotonic() >= next_read:  # every client reads a little, once a second
                next_read += 1.0
                for s in socks:
                    try:
                        s.recv(trickle)
                    except (BlockingIOError, OSError):
                        pass
            peak = max(peak, rss_kb(pid))
            try:
                peak_owed = max(peak_owed, _metrics(srv.port).get("snorky_outbound_bytes", 0))
            except requests.RequestException:
                pass
            time.sleep(0.2)  # the pace of the trickle and of the samples
        m = _metrics(srv.port)
        return {
            "clients": clients, "env": env or {}, "messages_of_8KB": sent,
            "rss_base_mb": round(base / 1024, 1), "rss_idle_mb": round(idle / 1024, 1),
            "rss_peak_mb": round(peak / 1024, 1),
            "idle_kb_per_conn": round((idle - base) / clients, 1),
            "peak_growth_kb_per_conn": round((peak - idle) / clients, 1),
            "outbound_bytes_peak_mb": round(max(peak_owed, m.get("snorky_outbound_bytes_peak", 0))
                                            / 2 ** 20, 1),
            "budget_mb": round(m.get("snorky_outbound_memory_budget_bytes", 0) / 2 ** 20, 1),
            "slow_consumer_disconnects": int(m.get("snorky_slow_consumer_disconnects_total", 0)),
            "write_stall_disconnects": int(m.get("snorky_write_stall_disconnects_total", 0)),
            "memory_budget_disconnects": int(m.get("snorky_memory_budget_disconnects_total", 0)),
            "rss_end_mb": round(rss_kb(pid) / 1024, 1),
        }
    finally:
        for s in socks:
            s.close()
        srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--budget", type=int, default=0, help="SNORKY_MAX_OUTBOUND_MEMORY (0: default)")
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = {"SNORKY_MAX_OUTBOUND_MEMORY": str(args.budget)} if args.budget else {}
    print(json.dumps(measure(args.clients, env, seconds=args.seconds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak with faults: two workers on one Redis, churn, slow and abrupt clients,
publishes, and every few minutes a Redis restart or a worker killed (SIGKILL)
and restarted.  Not run by CI.

    python -m bench.soak_faults --minutes 30             # the full soak
    python -m bench.soak_faults --minutes 4 --fault-every 60

Every ``--sample-every`` seconds it records each worker's RSS and open
descriptors; at the end it prints the series, the first and last samples per
worker incarnation, and the figures: rounds published, deliveries expected
and lost (split into rounds overlapping a fault and quiet rounds, where
nothing may be lost), slow clients cut by the memory budget or the write
timeout, and errors (anything a client met that a fault does not explain).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.servers import API_KEY, ServerProcess, free_port  # noqa: E402
from support.wsclient import SnorkyTestClient  # noqa: E402

from .quick import rss_kb  # noqa: E402
from .soak import fds  # noqa: E402


class Redis:
    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def open_slow(port: int, channel: str) -> socket.socket:
    """A raw WebSocket that subscribes and then never reads (a stalled phone)."""
    import base64
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    payload = json.dumps({"service": "pubsub", "message": {
        "command": "subscribe", "params": {"channel": channel}, "callId": 1}}).encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
              + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return s


def metric(port: int, name: str) -> float:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"X-Backend-Key": API_KEY},
                            timeout=5).text
    except requests.RequestException:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def soak_faults(seconds: float, clients: int = 40, channels: int = 5, fault_every: float = 180.0,
                sample_every: float = 10.0, seed: int = 1) -> dict:
    rng = random.Random(seed)
    redis = Redis()
    redis.start()
    ports = [free_port(), free_port()]
    env = {"SNORKY_REDIS_URL": redis.url, "SNORKY_RATE_LIMIT": "0", "SNORKY_LOG_LEVEL": "WARNING"}
    workers: list[ServerProcess | None] = [None, None]
    incarnation = [0, 0]
    totals = {"slow_consumer_disconnects": 0, "write_stall_disconnects": 0,
              "memory_budget_disconnects": 0, "broker_publish_failed": 0}

    def harvest(i):
        for k in totals:
            totals[k] += int(metric(ports[i], f"snorky_{k}_total"))

    def start_worker(i):
        workers[i] = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(ports[i])],
                                   port=ports[i], env=env)
        incarnation[i] += 1
        wait_connected(i)

    def wait_connected(i, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{ports[i]}/healthz", timeout=2).json()["broker"][
                        "state"] == "connected":
                    return True
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.05)  # polling the health endpoint: the broker state is only visible there
        return False

    for i in range(2):
        start_worker(i)
    pool: list[tuple[SnorkyTestClient, str, int]] = []
    slow: list[socket.socket] = []
    errors: list[str] = []
    samples: list[dict] = []

    def new_client():
        w = rng.randrange(2)
        c = SnorkyTestClient(f"ws://127.0.0.1:{ports[w]}/ws", timeout=5)
        ch = f"ch{rng.randrange(channels)}"
        c.ok("pubsub", "subscribe", {"channel": ch})
        return c, ch, w

    def sample(t0):
        row = {"t": round(time.monotonic() - t0, 1)}
        for i, srv in enumerate(workers):
            pid = srv.proc.pid if srv and srv.proc.poll() is None else None
            row[f"w{i}"] = {"inc": incarnation[i], "rss_kb": rss_kb(pid) if pid else None,
                            "fds": fds(pid) if pid else None}
        row["clients"] = len(pool)
        row["slow_open"] = len(slow)
        samples.append(row)

    pool = [new_client() for _ in range(clients)]
    publishers = [SnorkyTestClient(f"ws://127.0.0.1:{ports[i]}/ws", timeout=5) for i in range(2)]
    t0 = time.monotonic()
    sample(t0)
    deadline = t0 + seconds
    next_fault = t0 + fault_every
    next_sample = t0 + sample_every
    fault_until = 0.0
    faults: list[dict] = []
    rounds = expected = lost_quiet = lost_fault = churned = 0
    fault_kind = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_sample:
            sample(t0)
            next_sample += sample_every
        if now >= next_fault:
            next_fault += fault_every
            f = {"t": round(now - t0, 1)}
            if fault_kind % 2 == 0:
                f["kind"] = "redis restart"
                redis.kill()
                redis.start()
                f["reconnected"] = all(wait_connected(i) for i in range(2))
            else:
                victim = (fault_kind // 2) % 2
                f["kind"] = f"worker {victim} killed"
                harvest_ok = workers[victim]
                harvest(victim)
                harvest_ok.stop(sig=9)
                start_worker(victim)
                # its clients are gone: replace them; the publisher too
                for j, (c, _ch, w) in enumerate(pool):
                    if w == victim:
                        c.close()
                        pool[j] = new_client()
                publishers[victim].close()
                publishers[victim] = SnorkyTestClient(f"ws://127.0.0.1:{ports[victim]}/ws", timeout=5)
            f["recovered_s"] = round(time.monotonic() - now, 2)
            faults.append(f)
            fault_kind += 1
            fault_until = time.monotonic() + 3.0  # the rounds right after a fault may lose
        rounds += 1
        in_fault = time.monotonic() < fault_until
        try:
            for _ in range(3):  # churn, half of it abrupt (no close frame)
                j = rng.randrange(len(pool))
                c, _, _ = pool[j]
                if rng.random() < 0.5:
                    c.ws.sock.close()
                else:
                    c.close()
                pool[j] = new_client()
                churned += 1
            if rounds % 5 == 0:  # a client that stops reading
                slow.append(open_slow(ports[rng.randrange(2)], f"ch{rng.randrange(channels)}"))
            body = {"round": rounds, "pad": "x" * rng.choice((100, 2000, 8000))}
            pub = publishers[rounds % 2]
            for n in range(channels):
                pub.ok("pubsub", "publish", {"channel": f"ch{n}", "message": body})
        except Exception as exc:  # noqa: BLE001
            errors.append(f"round {rounds}: {type(exc).__name__}: {exc}")
            continue
        read_deadline = time.monotonic() + 2.0
        for c, ch, _ in pool:
            expected += 1
            ok = False
            try:
                while True:
                    msg = c.recv(max(0.01, read_deadline - time.monotonic()))["message"]
                    if msg.get("channel") == ch and msg["message"]["round"] >= rounds:
                        ok = msg["message"]["round"] == rounds
                        break
            except Exception:  # noqa: BLE001
                pass
            if not ok:
                if in_fault:
                    lost_fault += 1
                else:
                    lost_quiet += 1
        # slow clients the server has cut: close our end (the server's descriptors are the measure)
        alive = []
        for s in slow:
            s.setblocking(False)
            try:
                gone = s.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone or len(alive) > 50:
                s.close()
            else:
                alive.append(s)
        slow = alive
    sample(t0)
    for c, _, _ in pool:
        c.close()
    for p in publishers:
        p.close()
    for s in slow:
        s.close()
    for i in range(2):
        harvest(i)
    # after every client left: the workers' descriptors and memory at rest
    time.sleep(3)  # let the servers finish the disconnects (a measurement pause, not a sync)
    sample(t0)
    for srv in workers:
        srv.stop()
    redis.kill()
    return {"seconds": seconds, "rounds": rounds, "churned": churned, "deliveries_expected": expected,
            "lost_quiet": lost_quiet, "lost_around_faults": lost_fault, "errors": errors[:20],
            "error_count": len(errors), "faults": faults, "counters": totals, "samples": samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak_faults", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--fault-every", type=float, default=180.0, help="seconds between faults")
    ap.add_argument("--sample-every", type=float, default=10.0)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    r = soak_faults(args.minutes * 60, args.clients, fault_every=args.fault_every,
                    sample_every=args.sample_every)
    print(json.dumps(r, indent=1))
    return 0 if r["lost_quiet"] == 0 and r["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Soak test: connections churning, subscribing and publishing for N minutes.

    python -m bench.soak --minutes 10

Reports the server's RSS and open file descriptors at start and end (they
should be flat), and messages lost (must be zero): every message published
to a channel must reach every client subscribed to it at that moment.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.servers import ServerProcess  # noqa: E402
from support.wsclient import SnorkyTestClient  # noqa: E402

from .quick import rss_kb  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soak(seconds: float, clients: int = 40, channels: int = 5, seed: int = 1) -> dict:
    rng = random.Random(seed)
    srv = ServerProcess("embedded", app="wsgi:app", env={"SNORKY_RATE_LIMIT": "0"})
    try:
        pid = srv.proc.pid
        pool: list[tuple[SnorkyTestClient, str]] = []

        def new_client():
            c = SnorkyTestClient(srv.ws_url + "/ws")
            ch = f"ch{rng.randrange(channels)}"
            c.ok("pubsub", "subscribe", {"channel": ch})
            return c, ch

        pool = [new_client() for _ in range(clients)]
        publisher = SnorkyTestClient(srv.ws_url + "/ws")
        time.sleep(0.5)
        start = {"rss_kb": rss_kb(pid), "fds": fds(pid)}
        published = lost = churned = rounds = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rounds += 1
            # churn: a few clients leave (some abruptly) and new ones arrive
            for _ in range(3):
                i = rng.randrange(len(pool))
                c, _ = pool[i]
                if rng.random() < 0.5:
                    c.ws.sock.close()  # abrupt: no close frame
                else:
                    c.close()
                pool[i] = new_client()
                churned += 1
            # publish a round to every channel; everyone subscribed must get it
            for n in range(channels):
                publisher.ok("pubsub", "publish", {"channel": f"ch{n}", "message": {"round": rounds}})
                published += 1
            for c, ch in pool:
                msg = c.recv()["message"]
                if msg != {"type": "message", "channel": ch, "message": {"round": rounds}}:
                    lost += 1
        for c, _ in pool:
            c.close()
        publisher.close()
        # let the server finish the disconnects before the final reading
        end_deadline = time.monotonic() + 10
        while fds(pid) > start["fds"] - clients - 1 + 1 and time.monotonic() < end_deadline:
            time.sleep(0.05)
        end = {"rss_kb": rss_kb(pid), "fds": fds(pid)}
        return {"seconds": seconds, "rounds": rounds, "published": published, "churned": churned,
                "lost": lost, "start": start, "end": end}
    finally:
        srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=40)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = soak(args.minutes * 60, args.clients)
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""python -m bench.broker_hop URL: the broker hop alone, through one Redis.

    python -m bench.broker_hop redis://127.0.0.1:6379/0 [--rate 1000] [--seconds 3]

Two :class:`~snorky_sync.brokers.redis.RedisBroker` in one gevent process (two
origins, as two server processes would have): one subscribes to a topic, the
other publishes its clock on it ``--rate`` times a second; the latency is from
``publish()`` to the subscriber's handler: the sender's batching (a hub tick,
at most 5 ms), the round trip to Redis and back, the listener and dispatcher
greenlets.  In one process without Redis there is no hop: a service delivers
to its own connections before the broker is asked.  Prints one JSON object.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from snorky_sync.brokers.redis import RedisBroker  # noqa: E402

TOPIC = "bench-hop"


def _pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1e6


def measure(url: str, rate: float, seconds: float) -> dict:
    sender, receiver = RedisBroker(url), RedisBroker(url)
    got: list[int] = []
    receiver.subscribe(TOPIC, lambda data: got.append(time.perf_counter_ns() - int(data)))
    for b in (sender, receiver):
        b.start()
    deadline = time.monotonic() + 15
    while not got:                       # until the subscription is in place
        if time.monotonic() > deadline:
            raise RuntimeError(f"no message came back through {url}")
        sender.publish(TOPIC, str(time.perf_counter_ns()).encode())
        gevent.sleep(0.05)
    gevent.sleep(0.2)
    got.clear()
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):                   # a fixed rate, not a burst: each publish on its own tick
        gevent.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sender.publish(TOPIC, str(time.perf_counter_ns()).encode())
    deadline = time.monotonic() + 5
    while len(got) < n and time.monotonic() < deadline:
        gevent.sleep(0.01)
    for b in (sender, receiver):
        b.stop()
    lat = sorted(got)
    return {"url": url, "rate": rate, "sent": n, "received": len(lat),
            "p50_ms": _pct(lat, 0.5) if lat else None, "p99_ms": _pct(lat, 0.99) if lat else None,
            "max_ms": lat[-1] / 1e6 if lat else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.broker_hop", description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.url, args.rate, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The SockJS row: fan-out and latency over xhr-streaming and xhr-polling.

    python -m bench.sockjs [--sessions 200] [--publishes 200]

A modest Python (gevent) generator, since bench/loadgen.c speaks only
WebSocket.  The publisher posts one message at a time to /backend, so the
deliveries/s is bounded by publishes/s x sessions; the latency (publish to
read, across the real transport) is the figure to look at.  It starts the
default app embedded, opens N SockJS sessions of
one transport subscribed to one channel, publishes through /backend (each
message carries its send time) and counts deliveries and their latency.
Compare with the WebSocket rows of ``python -m bench`` only loosely: the
generator here is Python and shares the machine.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "sockjs"))

from rawhttp import Stream, request  # noqa: E402

from support.servers import API_KEY, ServerProcess  # noqa: E402

SUB = json.dumps([json.dumps({"service": "pubsub", "message": {
    "command": "subscribe", "params": {"channel": "bench"}, "callId": 1}})]).encode()


_last = [0.0]


def _deliveries(frame: bytes, now: float, lat: list) -> int:
    n = 0
    for m in json.loads(frame[1:]):
        msg = json.loads(m)["message"]
        if msg.get("type") == "message":
            lat.append(now - msg["message"]["t"])
            _last[0] = now
            n += 1
    return n


def run(transport: str, sessions: int, publishes: int, srv) -> dict:
    base = srv.url + "/sockjs/0/"
    lat: list[float] = []
    got = [0]
    urls = [base + uuid.uuid4().hex for _ in range(sessions)]

    def streaming(url):
        s = Stream("POST", url + "/xhr_streaming", timeout=60)
        s.read()
        s.read()  # prelude, o
        assert request("POST", url + "/xhr_send", body=SUB).status == 204
        buf = b""
        while got[0] < sessions * publishes:
            chunk = s.read()
            if not chunk:
                s = Stream("POST", url + "/xhr_streaming", timeout=60)
                s.read()
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            now = time.time()
            for line in lines:
                if line.startswith(b"a"):
                    got[0] += _deliveries(line, now, lat)

    def polling(url):
        assert request("POST", url + "/xhr").data == b"o\n"
        assert request("POST", url + "/xhr_send", body=SUB).status == 204
        while got[0] < sessions * publishes:
            data = request("POST", url + "/xhr", timeout=60).data.strip()
            if data.startswith(b"a"):
                got[0] += _deliveries(data, time.time(), lat)

    workers = [gevent.spawn(streaming if transport == "xhr-streaming" else polling, u) for u in urls]
    gevent.sleep(1.0)  # let every session subscribe (a benchmark, not a test)
    lat.clear()
    got[0] = 0
    session = requests.Session()
    start = time.time()
    for i in range(publishes):
        session.post(srv.url + "/backend", headers={"X-Backend-Key": API_KEY}, json={
            "service": "pubsub_backend", "message": {"command": "publish", "params": {
                "channel": "bench", "message": {"t": time.time(), "i": i}}}})
    gevent.joinall(workers, timeout=60)
    elapsed = max(1e-6, _last[0] - start)  # first publish to last delivery
    lat.sort()
    pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: float("nan"))
    return {"transport": transport, "sessions": sessions, "publishes": publishes,
            "deliveries": got[0], "per_s": got[0] / elapsed, "p50": pct(0.5), "p99": pct(0.99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--publishes", type=int, default=200)
    args = ap.parse_args()
    srv = ServerProcess("embedded", app="wsgi:app", env={"SNORKY_RATE_LIMIT": "0"})
    try:
        print("| transport | sessions | publishes | deliveries | deliveries/s | p50 / p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for transport in ("xhr-streaming", "xhr-polling"):
            r = run(transport, args.sessions, args.publishes, srv)
            print(f"| {r['transport']} | {r['sessions']} | {r['publishes']} | {r['deliveries']:,} "
                  f"| {r['per_s']:,.0f} | {r['p50']:.1f} / {r['p99']:.1f} |", flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

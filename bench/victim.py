"""The victim of python -m bench.attacks: one WebSocket doing RPC round trips, in its own process.

    python -m bench.victim --port PORT [--rate 50] [--probe /healthz]

It connects from 127.0.0.1 to /ws, prints ``ready``, and from the line
``go`` on stdin until the line ``stop`` it makes closed-loop RPC calls (a
PubSub publish to a channel nobody reads, ``--rate`` a second, the next one
sent when the previous one is answered and its tick has come) and records
each round trip.  A call unanswered after ``--call-timeout`` seconds counts as
timed out and the next one is sent; a connection the server closes counts as
dropped and is reopened.  Meanwhile a second thread opens a new connection
every ``--probe-every`` seconds for one HTTP GET of ``--probe`` (what a
newly arriving user meets).  After ``stop`` it prints one JSON line of
results.  Its own process keeps the attackers' threads from delaying its
reads (the round trips are measured, not the attackers' GIL).
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

from bench.rawnet import VICTIM, Closed, Refused, http, read_frames, tcp, ws_frame, ws_open

CHANNEL = "victim-nobody-reads-this"


class Victim:
    def __init__(self, port: int, rate: float, call_timeout: float):
        self.port, self.interval, self.call_timeout = port, 1.0 / rate, call_timeout
        self.rtts: list[float] = []
        self.timed_out = self.dropped = self.reconnect_failures = 0
        self.measuring = False
        self.done = threading.Event()
        self.s: socket.socket | None = None
        self.buf = bytearray()
        self.call_id = 0

    def connect(self) -> None:
        self.s, rest = ws_open(self.port, src=VICTIM, timeout=self.call_timeout)
        self.buf = bytearray(rest)

    def call(self) -> float | None:
        """One round trip: seconds, or None when it timed out."""
        self.call_id += 1
        cid = self.call_id
        msg = {"service": "pubsub", "message": {"command": "publish", "callId": cid,
                                                "params": {"channel": CHANNEL, "message": cid}}}
        assert self.s is not None
        t0 = time.perf_counter()
        self.s.sendall(ws_frame(1, json.dumps(msg).encode()))
        deadline = t0 + self.call_timeout
        while True:
            for op, payload in read_frames(self.buf):
                if op == 8:
                    raise Closed(f"closed by the server: {payload[:2].hex()} {payload[2:80]!r}")
                if op == 1 and f'"callId":{cid},'.encode() in payload.replace(b" ", b""):
                    return time.perf_counter() - t0
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise Closed("closed by the server")
            self.buf += chunk

    def run(self) -> None:
        next_at = time.perf_counter()
        while not self.done.is_set():
            counted = self.measuring  # a call started before "stop" counts, however long it takes
            try:
                if self.s is None:
                    self.connect()
                rtt = self.call()
            except (OSError, Refused) as exc:
                if self.s is not None:
                    self.s.close()
                    self.s = None
                    self.dropped += counted
                else:
                    self.reconnect_failures += counted
                print(f"victim: {exc}", file=sys.stderr)
                self.done.wait(0.1)
                continue
            if counted:
                if rtt is None:
                    self.timed_out += 1
                else:
                    self.rtts.append(rtt)
            next_at = max(next_at + self.interval, time.perf_counter())
            self.done.wait(max(0.0, next_at - time.perf_counter()))


class Probe:
    """A new connection every ``every`` seconds, one GET of ``path`` each."""

    def __init__(self, port: int, path: str, every: float, timeout: float):
        self.port, self.path, self.every, self.timeout = port, path, every, timeout
        self.times: list[float] = []
        self.failures: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            t0 = time.perf_counter()
            try:
                s = tcp(self.port, VICTIM, timeout=self.timeout)
                try:
                    status, _ = http(s, "GET", self.path, port=self.port)
                finally:
                    s.close()
                why = None if status == 200 else f"HTTP {status}"
            except (OSError, Refused, ValueError) as exc:
                why = type(exc).__name__
            if why is None:
                self.times.append(time.perf_counter() - t0)
            else:
                self.failures[why] = self.failures.get(why, 0) + 1


def _pct(sorted_values: list[float], q: float) -> float | None:
    """Milliseconds (infinite when it falls on a call that timed out)."""
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1000, 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.victim", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=50.0, help="RPC calls a second (closed loop)")
    ap.add_argument("--call-timeout", type=float, default=5.0)
    ap.add_argument("--probe", default="/healthz", help="path of the new-connection probe")
    ap.add_argument("--probe-every", type=float, default=0.5)
    args = ap.parse_args(argv)
    victim = Victim(args.port, args.rate, args.call_timeout)
    victim.connect()
    probe = Probe(args.port, args.probe, args.probe_every, args.call_timeout)
    threads = [threading.Thread(target=victim.run, daemon=True), threading.Thread(target=probe.run, daemon=True)]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    victim.measuring = True
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    sys.stdin.readline()  # "stop" (or the driver gone)
    victim.measuring = False
    seconds = time.perf_counter() - t0
    victim.done.set()  # the call in flight is still waited for
    probe.done.set()
    for t in threads:
        t.join(args.call_timeout + 1)
    rtts = sorted(victim.rtts + [float("inf")] * victim.timed_out)  # a call never answered is the slowest
    print(json.dumps({
        "seconds": round(seconds, 2), "calls": len(victim.rtts), "p50_ms": _pct(rtts, 0.5), "p99_ms": _pct(rtts, 0.99),
        "max_ms": _pct(rtts, 1.0), "timed_out": victim.timed_out, "dropped": victim.dropped,
        "reconnect_failures": victim.reconnect_failures,
        "probe": {"path": args.probe, "ok": len(probe.times), "p99_ms": _pct(sorted(probe.times), 0.99),
                  "max_ms": _pct(sorted(probe.times), 1.0), "failures": probe.failures},
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

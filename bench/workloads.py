"""The workloads: each one run of bench/loadgen.c against a started server."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

from bench import build
from bench.procs import GENERATOR_CORE, pinned, rss_kb


@dataclass
class Sizes:
    subscribers: int = 1000
    size: int = 100             # bytes of each published message
    duration: float = 3.0       # seconds of publishing at saturation
    max_messages: int = 1_000_000
    window: int = 100           # unacknowledged publishes at saturation
    rate: float = 10.0          # publishes/s for the fixed-rate run (all peers keep up)
    rate_messages: int = 40
    rpc_clients: int = 50
    rpc_seconds: float = 3.0
    warmup: float = 0.5
    idle: tuple = (5000, 10000)
    concurrency: int = 64       # handshakes in flight
    timeout: float = 120.0      # bound on any one phase of the generator


QUICK = Sizes(subscribers=100, duration=1.0, max_messages=200, rate=20.0, rate_messages=10, rpc_clients=10,
              rpc_seconds=0.5, warmup=0.2, idle=(200, 400), timeout=30.0)


class LoadgenError(RuntimeError):
    pass


def _cmd(mode: str, target, port: int, pid: int, **opts) -> list[str]:
    cmd = [str(build.binary("loadgen")), mode, "--port", str(port), "--path", target.path, "--proto", target.proto,
           "--cpu-pids", str(pid)]
    for key, value in opts.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


def _parse(out: str, err: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise LoadgenError(f"no result from loadgen: {err.strip()[-300:]}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise LoadgenError(result["error"])
    return result


def run(mode: str, target, port: int, pid: int, timeout: float, **opts) -> dict:
    proc = subprocess.run(_cmd(mode, target, port, pid, timeout=timeout, **opts), capture_output=True, text=True,
                          timeout=timeout * 2 + 30, preexec_fn=pinned(GENERATOR_CORE))
    return _parse(proc.stdout, proc.stderr)


def fanout(target, port: int, pid: int, s: Sizes) -> dict:
    """Saturation: one publisher keeps ``window`` publishes unacknowledged."""
    return run("fanout", target, port, pid, s.timeout, subs=s.subscribers, messages=s.max_messages,
               duration=s.duration, window=s.window, size=s.size)


def fixed_rate(target, port: int, pid: int, s: Sizes) -> dict:
    return run("fanout", target, port, pid, s.timeout, subs=s.subscribers, messages=s.rate_messages,
               rate=s.rate, size=s.size)


def rpc(target, port: int, pid: int, s: Sizes) -> dict:
    return run("rpc", target, port, pid, s.timeout, clients=s.rpc_clients, seconds=s.rpc_seconds, warmup=s.warmup)


class Holder:
    """A loadgen holding ``conns`` idle connections until :meth:`release`."""

    def __init__(self, target, port: int, pid: int, conns: int, s: Sizes):
        self.proc = subprocess.Popen(_cmd("idle", target, port, pid, conns=conns, concurrency=s.concurrency,
                                          timeout=s.timeout, hold=s.timeout * 4),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=pinned(GENERATOR_CORE))
        line = self.proc.stdout.readline()  # loadgen bounds its connect phase by --timeout
        try:
            self.ready = _parse(line, "")
        except LoadgenError:
            self.release()
            raise LoadgenError(f"idle: {line.strip() or self.proc.stderr.read()[-300:]}")

    def release(self) -> dict:
        try:
            out, err = self.proc.communicate("\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return _parse(out, err) if "{" in out else {}


def settled_rss(pid: int, limit: float = 5.0) -> int:
    """RSS once two readings 0.2 s apart agree within 0.5% (or after ``limit`` s)."""
    prev = rss_kb(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.2)  # a measurement interval, not synchronisation
        cur = rss_kb(pid)
        if abs(cur - prev) <= prev * 0.005:
            return cur
        prev = cur
    return prev


def idle_memory(target, port: int, pid: int, s: Sizes) -> dict:
    """RSS growth per idle connection at each of ``s.idle`` (cumulative, on one
    server after 100 warm-up connections), and handshakes/s of the first batch."""
    holders = [Holder(target, port, pid, 100, s)]
    out = {"levels": {}}
    try:
        base = settled_rss(pid)
        held = 0
        for level in s.idle:
            h = Holder(target, port, pid, level - held, s)
            holders.append(h)
            held = level
            if "handshakes_per_s" not in out:
                out["handshakes_per_s"] = h.ready["handshakes_per_s"]
                out["handshake_server_cpu"] = h.ready["server_cpu"]
            rss = settled_rss(pid)
            ready = sum(x.ready["ready"] for x in holders[1:])
            out["levels"][level] = {"kb_per_conn": (rss - base) / level, "ready": ready, "rss_kb": rss}
        out["base_rss_kb"] = base
    finally:
        closed = [h.release() for h in holders]
    out["server_closed"] = sum(c.get("server_closed", 0) for c in closed)
    return out

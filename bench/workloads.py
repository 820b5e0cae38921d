"""The workloads: each one run of bench/loadgen.c against a started server."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace

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
    idle: tuple = (10000, 20000)
    concurrency: int = 100      # handshakes in flight
    timeout: float = 120.0      # bound on any one phase of the generator
    cursor_start: int = 10      # Cursors: clients of the first step, doubled while held
    cursor_max: int = 5000      # ... up to this many
    cursor_bisect: int = 4      # steps of bisection between the last held and the first failed N
    cursor_rate: float = 30.0   # updateCursor/s per client
    cursor_seconds: float = 2.0  # measured seconds per step (after `warmup`)
    cursor_p99_ms: float = 50.0  # a step holds when its notification p99 is under this (and nothing is lost)
    idle_capped: str = ""       # set by fit_idle: why the idle levels are lower than asked


QUICK = Sizes(subscribers=100, duration=1.0, max_messages=200, rate=20.0, rate_messages=10, rpc_clients=10,
              rpc_seconds=0.5, warmup=0.2, idle=(200, 400), timeout=30.0, cursor_start=5, cursor_max=10,
              cursor_bisect=0, cursor_seconds=0.5)

# the server's own files besides the idle sockets (listening socket, event
# loop, logs, libraries), and the 100 warm-up connections of idle_memory
FD_HEADROOM = 100
WARMUP_CONNS = 100


def fit_idle(s: Sizes, nofile: int) -> Sizes:
    """``s`` with its idle levels lowered to what one server process can hold
    under an open-file limit of ``nofile`` (one descriptor per connection)."""
    room = (nofile - FD_HEADROOM - WARMUP_CONNS) // 100 * 100
    if max(s.idle) <= room:
        return s
    levels = tuple(dict.fromkeys(min(level, room) for level in s.idle))
    why = (f"{', '.join(f'{x:,}' for x in s.idle)} idle connections asked; this machine's open-file limit "
           f"(RLIMIT_NOFILE, hard) is {nofile:,} per process, so the server can hold at most "
           f"{room:,} besides the {WARMUP_CONNS} warm-up ones")
    return replace(s, idle=levels, idle_capped=why)


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


def _cursor_step(target, port: int, pid: int, s: Sizes, n: int, tokens: str, document: str) -> dict:
    """One run of N Cursors clients; ``held`` and, when not, ``why``."""
    try:
        r = run("cursors", target, port, pid, s.timeout, clients=n, rate=s.cursor_rate, seconds=s.cursor_seconds,
                warmup=s.warmup, tokens=tokens, document=document)
    except LoadgenError as exc:
        return {"clients": n, "held": False, "why": str(exc)[:300]}
    want = n * s.cursor_rate * s.cursor_seconds
    why = []
    if r["failed"] or r["server_closed"]:
        why.append(f"{r['failed']} connections failed, {r['server_closed']} closed by the server")
    if r["errors"]:
        why.append(f"{r['errors']} RPC errors ({r['first_error'][:120]})")
    if r["lost"]:
        why.append(f"lost {r['lost']:,} of {r['expected']:,}")
    if r["p99_ms"] < 0 or r["p99_ms"] >= s.cursor_p99_ms:
        why.append(f"p99 {r['p99_ms']:.0f} ms")
    if r["updates"] < 0.95 * want:
        why.append(f"{r['updates']:,} of {want:,.0f} updates sent (the generator fell behind)")
    return {**r, "held": not why, **({"why": "; ".join(why)} if why else {})}


def cursors(target, port: int, pid: int, s: Sizes) -> dict:
    """The largest N of Cursors clients (one document, one cursor each, moved
    ``cursor_rate`` times a second) whose cursorUpdated p99 stays under
    ``cursor_p99_ms`` with nothing lost: N doubles from ``cursor_start``
    while it holds, then ``cursor_bisect`` steps bisect.  Each step is a fresh
    document on the same server."""
    steps: list[dict] = []
    fd, tokens = tempfile.mkstemp(prefix="bench-tokens-", suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(t + "\n" for t in target.tokens(s.cursor_max)))

        def attempt(n: int) -> dict:
            r = _cursor_step(target, port, pid, s, n, tokens, f"bench-{len(steps)}")
            steps.append(r)
            return r

        held, failed = None, None
        n = s.cursor_start
        while True:
            r = attempt(n)
            if not r["held"]:
                failed = r
                break
            held = r
            if n >= s.cursor_max:
                break
            n = min(2 * n, s.cursor_max)
        for _ in range(s.cursor_bisect):
            lo = held["clients"] if held else 1
            if failed is None or failed["clients"] - lo <= max(1, lo // 20):
                break
            mid = (lo + failed["clients"]) // 2
            if mid < 2:
                break
            r = attempt(mid)
            if r["held"]:
                held = r
            else:
                failed = r
    finally:
        os.unlink(tokens)
    return {"max_clients": held["clients"] if held else 0, "at": held,
            "failed_at": failed and failed["clients"], "failed_why": failed and failed["why"],
            "steps": [{k: x.get(k) for k in ("clients", "held", "p99_ms", "expected", "received", "lost", "errors", "why")}
                      for x in steps]}


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
            raise LoadgenError(f"idle: {line.strip() or self.proc.stderr.read()[-300:]}") from None

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

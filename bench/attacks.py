"""python -m bench.attacks: a victim's RPC round trips while hostile clients attack, one row per attack class.

    python -m bench.attacks                       # every class, 10 s each, gunicorn -k gevent -w 1 wsgi:app
    python -m bench.attacks --only big,slowloris --seconds 5
    python -m bench.attacks --mode embedded       # or gunicorn-geventwebsocket

For each class a fresh server (the default app, wsgi:app, with its default
limits, the demos on) runs pinned to one core; the victim (bench/victim.py,
its own process: one WebSocket from 127.0.0.1, 50 closed-loop RPC calls a
second, plus a new connection every 500 ms for one HTTP GET) and the
attackers (bench/hostile.py: 10 hostile connections from 127.0.0.2, threads
of raw sockets) share the other core.  The victim measures while the
attackers run for ``--seconds``; meanwhile the server's CPU, RSS, open
descriptors and log size are sampled from /proc.  The target (issue #21): the
victim's p99 under 100 ms during every class.  The table is printed and
written to bench/results/attacks[-LABEL]-YYYY-MM-DD-HOST.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import report
from bench.hostile import ATTACKS, Attack, Ctx
from bench.procs import GENERATOR_CORE, Server, free_port, rss_kb, two_cores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TOKEN_SECRET = "bench-attacks-token-secret-0123456789"
TARGET_P99_MS = 100.0
DEMO_DB = Path(tempfile.gettempdir()) / f"snorky-bench-attacks-{os.getpid()}.db"  # not the demos' shared default
MODES = {"gunicorn": "gevent", "gunicorn-geventwebsocket": "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
         "embedded": None}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def server_env(port: int, mode: str, extra: dict) -> dict:
    """The default app's settings, plus what the bench needs: a backend key
    (/metrics), a token secret (identities for Cursors and Chat), the demos (the
    Todos API) on a database of its own."""
    env = {"SNORKY_HOST": "127.0.0.1", "SNORKY_PORT": str(port), "SNORKY_API_KEY": "bench-attacks-key-0123456789",
           "SNORKY_TOKEN_SECRET": TOKEN_SECRET, "SNORKY_DEMOS": "1", "SNORKY_DEMO_DATABASE_URL": f"sqlite:///{DEMO_DB}"}
    worker = MODES[mode]
    if worker:
        env.update({"SNORKY_WORKERS": "1", "SNORKY_WORKER_CLASS": worker})
    return {**env, **extra}


def start_server(mode: str, extra: dict, source: Path) -> Server:
    """The server of ``source`` (a snorky_sync source tree: this repository, or
    an exported older commit) on a free port."""
    port = free_port()
    env = {**server_env(port, mode, extra), "PYTHONPATH": str(source)}
    if MODES[mode] is None:
        return Server([sys.executable, "-m", "snorky_sync", "serve"], port, env=env, cwd=source)
    return Server([sys.executable, "-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"],
                  port, env=env, cwd=source, forks=True)


def limits(env: dict, source: Path) -> dict:
    """The limits the server of ``source`` reads from ``env`` (what the attacks size themselves on)."""
    code = ("import json; from snorky_sync.settings import Settings; s = Settings.from_env();"
            "print(json.dumps({'max_frame': s.max_frame_size, 'max_channel': s.max_channel_size,"
            " 'max_cursors': s.max_cursors}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env, "PYTHONPATH": str(source)}, check=True).stdout
    return json.loads(out)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    """The server's RSS, descriptors and log size, every 100 ms, in a thread."""

    def __init__(self, srv: Server, rss_cap_kb: int, on_cap):
        self.srv, self.cap, self.on_cap = srv, rss_cap_kb, on_cap
        self.rss_peak = self.fds_peak = 0
        self.capped = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def log_bytes(self) -> int:
        return os.fstat(self.srv.log.fileno()).st_size

    def start(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), cpu_seconds(self.srv.pid)
        self.rss0, self.fds0, self.log0 = rss_kb(self.srv.pid), open_fds(self.srv.pid), self.log_bytes()
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.1):
            try:
                rss = rss_kb(self.srv.pid)
            except OSError:
                return
            self.rss_peak = max(self.rss_peak, rss)
            self.fds_peak = max(self.fds_peak, open_fds(self.srv.pid))
            if rss > self.cap and not self.capped:
                self.capped = True
                self.on_cap()

    def stop(self) -> dict:
        self.done.set()
        self.thread.join(2)
        dt = time.monotonic() - self.t0
        pid = self.srv.pid
        rss, fds = rss_kb(pid), open_fds(pid)
        return {"cpu": (cpu_seconds(pid) - self.cpu0) / dt, "rss_start_mb": self.rss0 / 1024,
                "rss_peak_mb": max(self.rss_peak, rss) / 1024, "rss_end_mb": rss / 1024,
                "fds_start": self.fds0, "fds_peak": max(self.fds_peak, fds), "fds_end": fds,
                "log_kb_per_s": (self.log_bytes() - self.log0) / 1024 / dt, "rss_capped": self.capped}


def _tracebacks(output: str) -> dict:
    """{last line of each traceback: count} in the server's output."""
    found: dict = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((ln for ln in lines[i + 1:] if ln and not ln.startswith(" ")), "?")[:120]
            found[end] = found.get(end, 0) + 1
    return found


def run_class(attack: Attack, args, extra_env: dict) -> dict:
    r: dict = {"name": attack.name}
    try:
        srv = start_server(args.mode, extra_env, args.source)
    except Exception as exc:  # noqa: BLE001 - a server that cannot start is a row, not a crash
        r["error"] = f"server did not start: {str(exc)[:300]}"
        return r
    victim = None
    ctx = Ctx(srv.port, token=_signer(), **args.limits)
    threads: list[threading.Thread] = []
    try:
        victim = subprocess.Popen([sys.executable, "-m", "bench.victim", "--port", str(srv.port),
                                   "--rate", str(args.rate), "--probe", attack.probe], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert victim.stdin is not None and victim.stdout is not None
        if victim.stdout.readline().strip() != "ready":
            raise RuntimeError("the victim could not connect")
        time.sleep(0.5)  # the server settles after the victim's handshake (not a synchronisation)
        sampler = Sampler(srv, args.rss_cap * 1024, ctx.halt)
        sampler.start()
        for body in attack.bodies(ctx):
            t = threading.Thread(target=body, daemon=True)
            t.start()
            threads.append(t)
        victim.stdin.write("go\n")
        victim.stdin.flush()
        t0, own0 = time.monotonic(), time.process_time()
        time.sleep(args.seconds)  # the measured window (an attack stopped at the RSS cap does not shorten it)
        r["attackers_cpu"] = (time.process_time() - own0) / (time.monotonic() - t0)
        victim.stdin.write("stop\n")
        victim.stdin.flush()
        r["victim"] = json.loads(victim.stdout.readline() or "{}")
        r["server"] = sampler.stop()
    except Exception as exc:  # noqa: BLE001 - one class failing is a row saying why
        r["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        ctx.halt()
        for t in threads:
            t.join(5)
        r["attackers"] = dict(ctx.tally.most_common())
        r["attackers_still_running"] = sum(t.is_alive() for t in threads)
        if victim is not None and victim.poll() is None:
            victim.kill()
            victim.wait(5)
        r["tracebacks"] = _tracebacks(srv.output())
        srv.stop()
        for t in threads:
            t.join(5)
    return r


def _signer():
    from snorky_sync.auth import ConnectionTokens
    return ConnectionTokens(TOKEN_SECRET).create


def _f(v, fmt: str = "{:,.1f}") -> str:
    if v == float("inf"):
        return "> 5,000"  # a call unanswered after the victim's call timeout
    return "—" if v is None else fmt.format(v)


COLUMNS = ["attack", f"p99 < {TARGET_P99_MS:g} ms", "victim calls", "p50 ms", "p99 ms", "max ms",
           "timed out / dropped", "new conn worst ms (failed)", "server CPU", "attackers CPU", "RSS MB start → peak",
           "fds start → peak", "log KB/s"]


def row(r: dict) -> str:
    if "victim" not in r:
        return f"| {r['name']} | not measured: {r.get('error', '?')} |" + " |" * (len(COLUMNS) - 2)
    v, s, p = r["victim"], r["server"], r["victim"]["probe"]
    ok = v["p99_ms"] is not None and v["p99_ms"] < TARGET_P99_MS and not v["timed_out"] and not v["dropped"]
    failed = sum(p["failures"].values())
    cells = [r["name"], "yes" if ok else "**NO**", f"{v['calls']:,}", _f(v["p50_ms"], "{:.2f}"), _f(v["p99_ms"]),
             _f(v["max_ms"]), f"{v['timed_out']} / {v['dropped']}", f"{_f(p['max_ms'])} ({failed})",
             f"{s['cpu']:.0%}", _f(r.get("attackers_cpu"), "{:.0%}"), f"{s['rss_start_mb']:.0f} → {s['rss_peak_mb']:.0f}"
             + (" (cap: attack stopped)" if s["rss_capped"] else ""),
             f"{s['fds_start']} → {s['fds_peak']}", _f(s["log_kb_per_s"])]
    return "| " + " | ".join(cells) + " |"


def table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    lines += [row(r) for r in results]
    return "\n".join(lines) + "\n"


def details(results: list[dict]) -> str:
    """What the attackers did and met, and what the server logged, per class."""
    out = []
    for r in results:
        did = "; ".join(f"{k}: {v:,}" for k, v in r.get("attackers", {}).items()) or "nothing"
        line = f"- **{r['name']}**: {did}"
        p = r.get("victim", {}).get("probe", {})
        if p.get("failures"):
            line += f". Victim's new connections ({p['path']}) failed: " + ", ".join(
                f"{k} x{v}" for k, v in p["failures"].items())
        if r.get("attackers_still_running"):
            line += f". {r['attackers_still_running']} attacker threads still blocked at the end"
        if r.get("tracebacks"):
            line += ". Server tracebacks: " + "; ".join(f"{k} (x{v:,})" for k, v in r["tracebacks"].items())
        out.append(line)
    return "\n".join(out) + "\n"


def notes(args, lim: dict) -> str:
    lines = [f"Server: `{_server_cmd(args.mode)}` (the default app, default limits; the demos on; "
             f"SNORKY_MAX_FRAME_SIZE {lim['max_frame']:,} bytes) pinned to one core, a fresh process per "
             f"class; victim and attackers on the other core. Victim: one WebSocket from 127.0.0.1, "
             f"{args.rate:g} closed-loop RPC calls/s (a PubSub publish to a channel nobody reads), a call "
             f"unanswered after 5 s counts as timed out (shown as > 5,000 ms when a percentile falls on one); plus a new connection every 500 ms from 127.0.0.1 "
             f"for one HTTP GET (/healthz, or the class's own path; its worst time is shown). Attackers: 10 connections (unless said) "
             f"from 127.0.0.2, reopened when the server closes them, for {args.seconds:g} s per class. "
             f"Server CPU: share of one core over the class (attackers CPU: the attacking process's); RSS: before the attack → peak during it (the "
             f"attack is stopped when RSS passes {args.rss_cap:,} MB); fds: the server's open descriptors; "
             f"log: growth of the server's output. \"yes\": p99 under {TARGET_P99_MS:g} ms and no call "
             f"timed out or dropped.", ""]
    lines += [f"- **{a.name}**: {a.summary}." for a in ATTACKS if a.name in args.wanted]
    return "\n".join(lines) + "\n"


def _server_cmd(mode: str) -> str:
    if MODES[mode] is None:
        return "python -m snorky_sync serve"
    return f"gunicorn -c gunicorn.conf.py wsgi:app (-k {MODES[mode]} -w 1)"


def _code(source: Path) -> str:
    if source != ROOT:
        return f"the source tree {source}"
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "snorky_sync"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" with uncommitted changes in snorky_sync/" if dirty else "")


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="attack time per class (default 10)")
    ap.add_argument("--only", default="", help="comma-separated classes: " + ",".join(a.name for a in ATTACKS))
    ap.add_argument("--mode", choices=list(MODES), default="gunicorn",
                    help="gunicorn (-k gevent, default), gunicorn-geventwebsocket or embedded")
    ap.add_argument("--rate", type=float, default=50.0, help="victim's RPC calls/s")
    ap.add_argument("--rss-cap", type=int, default=3072, help="MB of server RSS at which an attack is stopped")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    ap.add_argument("--label", default="", help="in the results file's name: attacks-LABEL-DATE-HOST.md")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory of the results file")
    ap.add_argument("--source", type=Path, default=ROOT, help="the snorky_sync source tree the server runs "
                    "(default this repository; e.g. `git archive COMMIT | tar -x -C DIR` for an older one)")
    args = ap.parse_args(argv)
    args.wanted = [n for n in args.only.split(",") if n] or [a.name for a in ATTACKS]
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    unknown = set(args.wanted) - {a.name for a in ATTACKS}
    if unknown:
        print(f"unknown class(es): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    extra = dict(e.split("=", 1) for e in args.env)
    args.source = args.source.resolve()
    args.limits = limits(server_env(0, args.mode, extra), args.source)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server and the victim
    affinity = os.sched_getaffinity(0)
    if two_cores():
        os.sched_setaffinity(0, {GENERATOR_CORE})  # attackers and victim off the server's core
    results = []
    try:
        for attack in ATTACKS:
            if attack.name in args.wanted:
                log(f"[{attack.name}] {args.seconds:g} s")
                results.append(run_class(attack, args, extra))
    finally:
        os.sched_setaffinity(0, affinity)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        DEMO_DB.unlink(missing_ok=True)
    text = table(results)
    print(text)
    print(details(results))
    now = _dt.datetime.now()
    name = "-".join(x for x in ("attacks", args.label, now.date().isoformat(), platform.node() or "host") if x)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{name}.md"
    out.write_text(f"# python -m bench.attacks, {now.isoformat(timespec='seconds')}\n\n"
                   f"`python -m bench.attacks {' '.join(argv)}` on {report.machine()}; server code: {_code(args.source)}\n\n"
                   f"{text}\n{details(results)}\n{notes(args, args.limits)}\n"
                   f"Raw: {json.dumps(results)}\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

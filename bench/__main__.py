"""python -m bench: snorky_sync against its peers, one table.

    python -m bench                      # every target, full sizes (~5 min)
    python -m bench --quick              # small sizes, for a smoke run
    python -m bench --only embedded,snorky01

Each target server runs pinned to core 0 and the C load generator
(bench/loadgen.c, compiled on first use) to core 1.  Workloads: fan-out at
saturation and at a fixed rate, RPC round trips, idle connections (memory,
handshakes/s).  Targets: snorky_sync embedded and under gunicorn, the
generator's own ceiling against a trivial C server, Snorky 0.1 on Tornado 6
and Flask-SocketIO on gevent (both in bench/.peers-venv, installed on first
use; a peer that cannot be installed or started shows as a row saying why).
The table is printed and written to bench/results/YYYY-MM-DD-HOST.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
from pathlib import Path

from bench import build, report, workloads
from bench.peer_env import PeerUnavailable
from bench.procs import GENERATOR_CORE, free_port, two_cores
from bench.targets import TARGETS

RESULTS = Path(__file__).resolve().parent / "results"

NOTES = """Fan-out: {subs:,} subscribers of one channel, one publisher keeping {window} publishes of
{size}-byte messages unacknowledged for {duration:g} s (at most {maxm:,} publishes); every delivery is
decoded and checked (lost = published x subscribers - received). Fixed rate: {rate:g} publishes/s to
the same number of subscribers, latency from the publisher's send to each subscriber's read. RPC:
{rpc} connections, one publish (to a channel nobody reads) in flight each, closed loop. Fan-out,
fixed rate and RPC each ran {repeat} time(s) on one server process; the table shows the run with
the median deliveries/s, p99 and calls/s respectively, and "lost" adds up every run. Memory: RSS
growth of the server process per idle WebSocket, cumulative, after 100 warm-up connections, on a
fresh process; handshakes/s of the first batch with {conc} in flight. CPU: share of one core
(the server is pinned to core 0, the generator to core 1)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _start(target):
    """(server, None) or (None, reason)."""
    try:
        return target.start(free_port()), None
    except PeerUnavailable as exc:
        return None, f"unavailable: {exc}"
    except Exception as exc:  # noqa: BLE001 - a target that cannot start is a row, not a crash
        return None, f"did not start: {str(exc)[:300]}"


def _step(r: dict, key: str, fn, *args) -> None:
    try:
        r[key] = fn(*args)
    except (workloads.LoadgenError, subprocess.SubprocessError, OSError) as exc:
        r.setdefault("errors", []).append(f"{key}: {str(exc)[:300]}")


RANKED_BY = {"fanout": "deliveries_per_s", "rate": "p99_ms", "rpc": "calls_per_s"}


def _median_of(r: dict, key: str, runs: list[dict]) -> None:
    """The run with the median of its key figure stands for all; lost counts every run."""
    if not runs:
        return
    ordered = sorted(runs, key=lambda x: x[RANKED_BY[key]])
    r[key] = {**ordered[len(ordered) // 2], "runs": len(runs),
              "all_runs": [x[RANKED_BY[key]] for x in runs]}
    if "lost" in r[key]:
        r[key]["lost"] = sum(x["lost"] for x in runs)


def run_target(target, sizes, repeat: int = 1) -> dict:
    r = {"name": target.name, "label": target.label}
    srv, why = _start(target)
    if srv is None:
        r["unavailable"] = why
        return r
    try:
        log(f"[{target.name}] fan-out, fixed rate, RPC")
        runs = {"fanout": [], "rate": [], "rpc": []}
        for _ in range(repeat):
            for key, fn in (("fanout", workloads.fanout), ("rate", workloads.fixed_rate), ("rpc", workloads.rpc)):
                one: dict = {}
                _step(one, key, fn, target, srv.port, srv.pid, sizes)
                runs[key] += [one[key]] if key in one else []
                r.setdefault("errors", []).extend(one.get("errors", []))
        for key, got in runs.items():
            _median_of(r, key, got)
        if not r["errors"]:
            del r["errors"]
    finally:
        srv.stop()
    srv, why = _start(target)  # idle connections on a fresh process: no heap left over from fan-out
    if srv is None:
        r.setdefault("errors", []).append(f"idle: {why}")
        return r
    try:
        log(f"[{target.name}] idle connections {', '.join(map(str, sizes.idle))}")
        _step(r, "idle", workloads.idle_memory, target, srv.port, srv.pid, sizes)
    finally:
        srv.stop()
    return r


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (100 subscribers, 400 idle connections)")
    ap.add_argument("--only", default="", help="comma-separated targets: " + ",".join(t.name for t in TARGETS))
    ap.add_argument("--repeat", type=int, help="runs of each throughput workload; the median one is shown "
                    "(default 3, 1 with --quick)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory of the dated results file")
    ap.add_argument("--subscribers", type=int)
    ap.add_argument("--rate", type=float, help="publishes/s of the fixed-rate run")
    ap.add_argument("--duration", type=float, help="seconds of publishing at saturation")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    sizes = workloads.QUICK if args.quick else workloads.Sizes()
    overrides = {k: v for k, v in (("subscribers", args.subscribers), ("rate", args.rate),
                                   ("duration", args.duration)) if v is not None}
    sizes = dataclasses.replace(sizes, **overrides)
    wanted = [n for n in args.only.split(",") if n]
    unknown = set(wanted) - {t.name for t in TARGETS}
    if unknown:
        print(f"unknown target(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and generator
    affinity = os.sched_getaffinity(0)
    if two_cores():
        os.sched_setaffinity(0, {GENERATOR_CORE})  # this driver mostly waits; keep it off the server's core
    try:
        build.build_all()
        repeat = args.repeat or (1 if args.quick else 3)
        results = [run_target(t, sizes, repeat) for t in TARGETS if not wanted or t.name in wanted]
    finally:
        os.sched_setaffinity(0, affinity)  # when called in-process (the test), leave it as it was
    notes = NOTES.format(subs=sizes.subscribers, window=sizes.window, size=sizes.size, duration=sizes.duration,
                         maxm=sizes.max_messages, repeat=repeat, rate=sizes.rate, rpc=sizes.rpc_clients,
                         conc=sizes.concurrency)
    text = report.table(results, sizes)
    print(text)
    out = report.write(results, sizes, argv, args.out, notes)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

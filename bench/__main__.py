"""python -m bench: snorky_sync against its peers, one table.

    python -m bench                      # every target, full sizes (~5 min)
    python -m bench --quick              # small sizes, for a smoke run
    python -m bench --only embedded,snorky01

Each target server runs pinned to core 0 and the C load generator
(bench/loadgen.c, compiled on first use) to core 1.  Workloads: fan-out at
saturation and at a fixed rate, RPC round trips, shared cursors (the most
clients of one document whose cursor updates reach the others with p99 under
50 ms), idle connections (memory, handshakes/s).  Targets: snorky_sync
embedded and under gunicorn, the generator's own ceiling against a trivial C
server, Snorky 0.1 on Tornado 6 and Flask-SocketIO on gevent (both in
bench/.peers-venv), Node.js on the npm package ws (bench/.peers-node); each
peer is installed on first use, and one that cannot be installed or started
shows as a row saying why.
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
fresh process; handshakes/s of the first batch with {conc} in flight.{idle_capped} CPU: share of one core
(the server is pinned to core 0, the generator to core 1).

Cursors (run once per target, after RPC, on the same process): N clients, each with its own identity,
join one document of the Cursors service, each creates one cursor, then each moves it {crate:g} times a
second (updateCursor, staggered evenly; {cwarm:g} s warm-up, {csec:g} s measured). Every update is an RPC
answered to its sender and a cursorUpdated notification to the N-1 other members; the update's send
time travels in its position, so the latency is from the sender's send to each other client's read
(the reply latency is from the send to the sender's read of its response). A step holds when its
notification p99 is under {cp99:g} ms, every expected notification (updates x (N-1)) arrived within 3 s,
and no RPC failed and no connection closed; N doubles from {cstart} while it holds (at most {cmax:,}),
then {cbis} bisection step(s) narrow it; each step is a fresh document. The figures are those of the
largest N that held ("≥" when the cap held); the first failing N and why follow it. On a shared machine
one noisy step can end the search early. Identities: snorky_sync gets a signed connection token per
client (snorky_sync.auth.ConnectionTokens, SNORKY_TOKEN_SECRET set on the target) as ?token=; Snorky 0.1
has no authentication of its own, so its runner sets Client.identity from ?token= in a subclass of its
SnorkyWebSocketHandler (open()), the way a 0.1 application does; the Node.js peer takes ?token= as the
identity too. "n/a": the target has no Cursors service. Snorky 0.1 runs as shipped: Tornado leaves
Nagle's algorithm on (0.1 never calls set_nodelay), which delays its small replies and notifications
by up to ~40 ms at low load.

Node.js ws: one node process (single-threaded) on ws with permessage-deflate off, speaking the PubSub
and Cursors subset of the protocol (bench/peers/node_ws_server.mjs); a notification is encoded once and
the same Buffer is passed to ws.send for every recipient (one write per frame, ws's default)."""


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


def _logged_exceptions(output: str) -> dict:
    """{exception line: count} of the tracebacks in a server's output."""
    found: dict = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((ln for ln in lines[i + 1:] if ln and not ln.startswith(" ")), "?")
            found[end[:160]] = found.get(end[:160], 0) + 1
    return found


def _stop(srv, r: dict) -> None:
    for what, n in _logged_exceptions(srv.output()).items():
        r.setdefault("server_log", {})[what] = r.get("server_log", {}).get(what, 0) + n
    srv.stop()


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
        if target.identity is None:
            r["cursors"] = None
        else:
            log(f"[{target.name}] cursors")
            _step(r, "cursors", workloads.cursors, target, srv.port, srv.pid, sizes)
        if not r["errors"]:
            del r["errors"]
    finally:
        _stop(srv, r)
    srv, why = _start(target)  # idle connections on a fresh process: no heap left over from fan-out
    if srv is None:
        r.setdefault("errors", []).append(f"idle: {why}")
        return r
    try:
        log(f"[{target.name}] idle connections {', '.join(map(str, sizes.idle))}")
        _step(r, "idle", workloads.idle_memory, target, srv.port, srv.pid, sizes)
    finally:
        _stop(srv, r)
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
    ap.add_argument("--testbed", action="store_true",
                    help="instead: fan-out through nginx on the multi-host testbed (bench/testbed_bench.py; root)")
    ap.add_argument("--testbed-hosts", default="1,2,3", help="host counts of --testbed, one row each")
    ap.add_argument("--testbed-workers", type=int, default=2, help="gunicorn workers per host of --testbed")
    ap.add_argument("--capacity", action="store_true",
                    help="instead: the Centrifugo-2020 scenario on the testbed, processes x shards (bench/capacity.py; root)")
    ap.add_argument("--capacity-processes", default="1,2,4", help="process counts of --capacity (1, 2, 4)")
    ap.add_argument("--capacity-shards", default="1,2,3", help="Redis shard counts of --capacity (1-3)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    sizes = workloads.QUICK if args.quick else workloads.Sizes()
    overrides = {k: v for k, v in (("subscribers", args.subscribers), ("rate", args.rate),
                                   ("duration", args.duration)) if v is not None}
    sizes = dataclasses.replace(sizes, **overrides)
    if args.capacity:
        from bench import capacity
        return capacity.main(capacity.QUICK if args.quick else capacity.Scenario(),
                             [int(n) for n in args.capacity_processes.split(",")],
                             [int(n) for n in args.capacity_shards.split(",")], argv, args.out)
    if args.testbed:
        from bench import testbed_bench
        return testbed_bench.main(sizes, [int(n) for n in args.testbed_hosts.split(",")], args.testbed_workers,
                                  argv, args.out)
    wanted = [n for n in args.only.split(",") if n]
    unknown = set(wanted) - {t.name for t in TARGETS}
    if unknown:
        print(f"unknown target(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by servers and generator
    sizes = workloads.fit_idle(sizes, hard)
    if sizes.idle_capped:
        log(f"idle levels {sizes.idle}: {sizes.idle_capped}")
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
                         conc=sizes.concurrency, crate=sizes.cursor_rate, cwarm=sizes.warmup,
                         csec=sizes.cursor_seconds, cp99=sizes.cursor_p99_ms, cstart=sizes.cursor_start,
                         cmax=sizes.cursor_max, cbis=sizes.cursor_bisect,
                         idle_capped=f" Idle levels lowered: {sizes.idle_capped}." if sizes.idle_capped else "")
    text = report.table(results, sizes)
    print(text)
    out = report.write(results, sizes, argv, args.out, notes)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

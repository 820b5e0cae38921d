"""python -m bench --testbed: PubSub fan-out through nginx on the multi-host testbed.

    python -m bench --testbed [--quick] [--testbed-hosts 1,2,3] [--subscribers N] [--duration S]

For each host count, bench/testbed.py starts that many hosts (network
namespaces, gunicorn -k gevent -w 2 each, one Redis broker) behind nginx;
bench/loadgen.c connects every subscriber and the publisher to nginx on
127.0.0.1, so least_conn spreads them over the hosts and each publish
crosses Redis to every process.  Fan-out at saturation and at a fixed rate,
as in ``python -m bench``; CPU of the hosts' processes (all of them), of
nginx and of the broker's redis-server, from /proc.  Written to
bench/results/testbed-YYYY-MM-DD-HOST.md.  Every process shares this
machine's cores: the figures show what the hops (nginx, Redis, N processes)
cost on one machine, not what N real hosts would carry.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import types
from pathlib import Path

from bench import build, report, testbed, workloads
from bench.procs import children
from bench.targets import SNORKY_ENV

INSTANCE = int(os.environ.get("SNORKY_TESTBED_BENCH_INSTANCE", "3"))
TARGET = types.SimpleNamespace(path="/ws", proto="snorky")
ENV = {k: v for k, v in SNORKY_ENV.items() if k != "SNORKY_HOST"}
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    """utime + stime of ``pids``, seconds (dead ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def _measure(fn, port: int, pids: dict[str, list[int]], sizes) -> dict:
    before = {k: _cpu_s(v) for k, v in pids.items()}
    r = fn(TARGET, port, ",".join(str(p) for p in pids["hosts"]), sizes)
    for k, v in pids.items():
        r[f"{k}_cpu_s"] = _cpu_s(v) - before[k]
    return r


def run_hosts(n: int, workers: int, sizes) -> dict:
    r: dict = {"hosts": n, "workers": workers}
    # one Redis broker, as the notes and the redis CPU column say (the testbed defaults to its three shards)
    state = testbed.up(hosts=n, workers=workers, env=ENV, instance=INSTANCE, broker_shards=1)
    try:
        nginx = [state.nginx["pid"], *children(state.nginx["pid"])]
        pids = {"hosts": [p for h in state.hosts for p in testbed._netns_pids(h.netns)],
                "nginx": nginx, "redis": [state.shards[0]["pid"]]}
        for key, fn in (("fanout", workloads.fanout), ("rate", workloads.fixed_rate)):
            try:
                r[key] = _measure(fn, state.nginx["port"], pids, sizes)
            except (workloads.LoadgenError, OSError) as exc:
                r.setdefault("errors", []).append(f"{key}: {str(exc)[:300]}")
    finally:
        testbed.down(INSTANCE, quiet=True)
    return r


def _per_core(r: dict | None, key: str) -> str:
    if not r or r.get("elapsed_s", 0) < 0.5:
        return "—"
    return f"{r[f'{key}_cpu_s'] / r['elapsed_s']:.0%}"


def _per_cpu_s(r: dict | None) -> str:
    if not r or not r.get("hosts_cpu_s"):
        return "—"
    return f"{r['deliveries_per_s'] * r['elapsed_s'] / r['hosts_cpu_s']:,.0f}"


def table(results: list[dict], sizes) -> str:
    cols = ["hosts x workers", "fan-out deliveries/s", "publishes/s", "fan-out p50 / p99 ms (saturation)",
            f"p50 / p99 ms at {sizes.rate:g} publishes/s", "lost (saturation / fixed rate)",
            "deliveries per host-CPU-second", "CPU: hosts / nginx / redis (fan-out, share of a core)"]
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for r in results:
        f, fr = r.get("fanout"), r.get("rate")
        cells = [f"{r['hosts']} x {r['workers']}", report._n(f and f["deliveries_per_s"]),
                 report._n(f and f["publishes_per_s"]), report._ms(f), report._ms(fr),
                 f"{report._n(f and f['lost'])} / {report._n(fr and fr['lost'])}", _per_cpu_s(f),
                 " / ".join(_per_core(f, k) for k in ("hosts", "nginx", "redis"))]
        lines.append("| " + " | ".join(cells) + " |")
    problems = [f"- {r['hosts']} hosts: {e}" for r in results for e in r.get("errors", [])]
    return "\n".join(lines) + "\n" + ("\nProblems:\n" + "\n".join(problems) + "\n" if problems else "")


NOTES = """Each row: a fresh testbed (bench/testbed.py, instance {instance}) of that many hosts, each a network
namespace running gunicorn -k gevent with {workers} workers (the default app, no rate limits), behind one nginx
(least_conn, no sticky sessions) on 127.0.0.1, one redis-server as the broker.  Fan-out: {subs:,} subscribers
of one channel and one publisher, all through nginx (so spread over the hosts), the publisher keeping
{window} publishes of {size} bytes unacknowledged for {duration:g} s; fixed rate: {rate:g} publishes/s to the
same subscribers, latency from the publisher's send to each subscriber's read (through nginx, a host, Redis,
another host, nginx).  CPU from /proc: every process of every host, nginx's master and worker, the broker's
redis-server, over the fan-out run.  Everything shares this machine's {cores} cores with the load generator:
more hosts here add hops and processes, not cores; read the rows as the cost of the path, not as capacity."""


def main(sizes, hosts: list[int], workers: int, argv: list[str], out_dir: Path) -> int:
    build.build_all()
    results = []
    for n in hosts:
        print(f"[testbed bench] {n} host(s) x {workers} workers", file=sys.stderr, flush=True)
        results.append(run_hosts(n, workers, sizes))
    text = table(results, sizes)
    print(text)
    now = _dt.datetime.now()
    out = out_dir / f"testbed-{now.date().isoformat()}-{platform.node() or 'host'}.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = NOTES.format(instance=INSTANCE, workers=workers, subs=sizes.subscribers, window=sizes.window,
                         size=sizes.size, duration=sizes.duration, rate=sizes.rate, cores=os.cpu_count())
    out.write_text(f"# python -m bench --testbed, {now.isoformat(timespec='seconds')}\n\n"
                   f"`python -m bench {' '.join(argv)}` on {report.machine()}\n\n{text}\n{notes}\n"
                   f"\nRaw: {json.dumps(results)}\n")
    print(f"written to {out}")
    return 0 if all("errors" not in r for r in results) else 1

"""python -m bench --capacity: the Centrifugo-2020 scenario on the multi-host testbed (issue #26 item 4).

    sudo python -m bench --capacity [--quick] [--capacity-processes 1,2,4] [--capacity-shards 1,2,3]

One cell per (processes, shards): a fresh testbed (bench/testbed.py, instance
5) with the processes mapped to hosts x workers as PROCESSES says (1 = 1 x 1,
2 = 2 x 1, 4 = 2 x 2: every process but the first on another host than some
other, so publishes cross Redis between hosts) and SNORKY_REDIS_URL naming
that many of its three shards; plus one cell of one process without Redis
(the in-process broker), the baseline of the broker hop.  In each cell
bench/loadgen.c's ``groups`` mode connects through nginx: N connections each
in its personal channel and its group's channel (groups of 10), churners
closing and reopening at a fixed rate, publishers sending 100-byte messages
to the group channels (one in ten to a personal one); a saturation phase,
then a fixed-rate phase on the same connections.  CPU of the hosts'
processes, nginx and each shard's redis-server from /proc/PID/task/*/schedstat, sampled when the
generator prints each phase's start and result line.  Written to
bench/results/capacity-YYYY-MM-DD-HOST.md.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import build, report, testbed
from bench.procs import children
from bench.targets import SNORKY_ENV

INSTANCE = int(os.environ.get("SNORKY_CAPACITY_INSTANCE", "5"))
ENV = {k: v for k, v in SNORKY_ENV.items() if k != "SNORKY_HOST"}
#: processes -> (hosts, gunicorn workers per host)
PROCESSES = {1: (1, 1), 2: (2, 1), 4: (2, 2)}


@dataclass
class Scenario:
    conns: int = 1000           # stable connections: personal channel + group channel each
    group: int = 10
    churners: int = 100         # connections that are closed and reopened ...
    churn: float = 50.0         # ... this many per second
    publishers: int = 4
    window: int = 50            # unacknowledged publishes per publisher at saturation
    saturation_s: float = 3.0
    rate: float = 500.0         # publishes/s of the fixed-rate phase
    rate_s: float = 3.0
    size: int = 100
    personal_every: int = 10    # one publish in this many to a personal channel


QUICK = Scenario(conns=200, churners=20, churn=10.0, publishers=2, saturation_s=1.0, rate=100.0, rate_s=1.0)


def _cpu_s(pids: list[int]) -> float:
    """CPU time of ``pids`` and all their threads, seconds, from schedstat (ns:
    a shard's redis-server uses a few hundredths of a second in a phase, a few
    clock ticks in /proc/PID/stat); dead ones count 0."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def _loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_cell(processes: int, shards: int, sc: Scenario) -> dict:
    hosts, workers = PROCESSES[processes]
    r: dict = {"processes": processes, "hosts": hosts, "workers": workers, "shards": shards,
               "load_before": _loadavg()}
    state = testbed.up(hosts=hosts, workers=workers, env=ENV, instance=INSTANCE, broker_shards=shards)
    try:
        host_pids = [p for h in state.hosts for p in testbed._netns_pids(h.netns)]
        groups = {"hosts": host_pids, "nginx": [state.nginx["pid"], *children(state.nginx["pid"])]}
        for i, s in enumerate(state.shards[:shards]):
            groups[f"shard{i}"] = [s["pid"]]
        cmd = [str(build.binary("loadgen")), "groups", "--port", str(state.nginx["port"]),
               "--cpu-pids", ",".join(map(str, host_pids)), "--subs", str(sc.conns), "--group", str(sc.group),
               "--churners", str(sc.churners), "--churn", str(sc.churn), "--clients", str(sc.publishers),
               "--window", str(sc.window), "--duration", str(sc.saturation_s), "--rate", str(sc.rate),
               "--seconds", str(sc.rate_s), "--size", str(sc.size), "--personal-every", str(sc.personal_every),
               "--drain", "5", "--timeout", "60"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started: dict = {}
        assert proc.stdout is not None
        for line in proc.stdout:             # CPU sampled as each phase starts and ends
            sample = {k: _cpu_s(v) for k, v in groups.items()}
            got = json.loads(line)
            if "error" in got:
                r.setdefault("errors", []).append(got["error"][:300])
            elif got.get("event") == "start":
                started = sample
            elif got.get("event") == "result":
                got.update({f"{k}_cpu_s": sample[k] - started.get(k, 0.0) for k in groups})
                r[got["phase"]] = got
        proc.wait(timeout=30)
        if proc.returncode:
            r.setdefault("errors", []).append(f"loadgen exited {proc.returncode}: {(proc.stderr.read() if proc.stderr else '')[-300:]}")
        if shards == 0:                      # the hosts leave the shards idle: the hop alone, through shard 0
            hop = subprocess.run([sys.executable, "-m", "bench.broker_hop", state.shards[0]["url"]],
                                 capture_output=True, text=True, cwd=testbed.ROOT, timeout=60)
            try:
                r["hop"] = json.loads(hop.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                r.setdefault("errors", []).append(f"broker_hop: {hop.stderr.strip()[-300:]}")
    finally:
        testbed.down(INSTANCE, quiet=True)
    r["load_after"] = _loadavg()
    return r


def _cores(p: dict | None, key: str) -> float | None:
    if not p or p.get("elapsed_s", 0) < 0.3 or f"{key}_cpu_s" not in p:
        return None
    return p[f"{key}_cpu_s"] / p["elapsed_s"]


def _ms(p: dict | None) -> str:
    return "—" if not p else f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def shard_cells(r: dict, p: dict | None) -> tuple[str, str]:
    """(each shard's CPU as a share of a core, Redis CPU µs per publish summed over the shards)."""
    if not p or not r["shards"]:
        return "—", "—"
    each = [_cores(p, f"shard{i}") for i in range(r["shards"])]
    total = sum(p.get(f"shard{i}_cpu_s", 0.0) for i in range(r["shards"]))
    per_pub = total / p["published"] * 1e6 if p.get("published") else None
    return " / ".join(_pct(x) for x in each), "—" if per_pub is None else f"{per_pub:.0f}"


def table(results: list[dict], sc: Scenario) -> str:
    cols = ["processes (hosts x workers)", "Redis shards", "deliveries/s (saturation)", "publishes/s",
            "p50 / p99 ms (saturation)", f"p50 / p99 ms at {sc.rate:g} publishes/s", "lost",
            "deliveries per server-CPU-second", "server CPU µs per publish", "server CPU (cores)", "nginx CPU (cores)",
            "Redis CPU per shard (share of a core)", "Redis CPU µs per publish (all shards)", "churn/s",
            "load average before"]
    lines = ["| " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * (len(cols) - 2)]
    for r in results:
        s, fr = r.get("saturation"), r.get("rate")
        per_cpu = (f"{s['deliveries_per_s'] * s['elapsed_s'] / s['hosts_cpu_s']:,.0f}"
                   if s and s.get("hosts_cpu_s") else "—")
        per_pub_cpu = f"{s['hosts_cpu_s'] / s['published'] * 1e6:,.0f}" if s and s.get("published") else "—"
        lost = "—" if not s else f"{s['lost']:,} / {fr['lost']:,}" if fr else f"{s['lost']:,}"
        host_cores, nginx_cores = _cores(s, "hosts"), _cores(s, "nginx")
        each, per_pub = shard_cells(r, s)
        cells = [f"{r['processes']} ({r['hosts']} x {r['workers']})", str(r["shards"]) if r["shards"] else "none",
                 report._n(s and s["deliveries_per_s"]), report._n(s and s["publishes_per_s"]), _ms(s), _ms(fr), lost,
                 per_cpu, per_pub_cpu, "—" if host_cores is None else f"{host_cores:.2f}",
                 "—" if nginx_cores is None else f"{nginx_cores:.2f}", each, per_pub,
                 report._n(s and s["churn_per_s"]), r["load_before"].split(",")[0]]
        lines.append("| " + " | ".join(cells) + " |")
    problems = [f"- {r['processes']} processes, {r['shards']} shards: {e}" for r in results for e in r.get("errors", [])]
    return "\n".join(lines) + "\n" + ("\nProblems:\n" + "\n".join(problems) + "\n" if problems else "")


def hop_table(results: list[dict]) -> str:
    """The broker hop: one process without Redis, one through Redis (its
    subscribers all local: the publish goes to Redis, the deliveries do
    not wait for it), two processes on one shard (about half the deliveries
    one hop away), and the hop alone (bench/broker_hop.py)."""
    rows = [("1 process, in process (no Redis)", 1, 0), ("1 process, 1 shard (deliveries local)", 1, 1),
            ("2 processes (2 x 1), 1 shard (~half one hop away)", 2, 1)]
    lines = ["| | p50 / p99 ms at the fixed rate | p50 / p99 ms at saturation | deliveries/s (saturation) |",
             "|---|---:|---:|---:|"]
    for name, p, n in rows:
        r = next((x for x in results if x["processes"] == p and x["shards"] == n), None)
        if r:
            lines.append(f"| {name} | {_ms(r.get('rate'))} | {_ms(r.get('saturation'))} | "
                         f"{report._n(r.get('saturation') and r['saturation']['deliveries_per_s'])} |")
    local = next((x for x in results if x["processes"] == 1 and x["shards"] == 0), {})
    hop = local.get("hop")
    if hop and hop.get("p50_ms") is not None:
        lines.append(f"| the hop alone (bench/broker_hop.py: publish() to another broker's handler through "
                     f"shard 0, {hop['rate']:g}/s, {hop['received']:,} of {hop['sent']:,} back) | "
                     f"{hop['p50_ms']:.1f} / {hop['p99_ms']:.1f} | | |")
    return "\n".join(lines) + "\n"


NOTES = """Each row: a fresh testbed (bench/testbed.py, instance {instance}): the processes as hosts (network
namespaces) x gunicorn -k gevent workers, the default app with no rate limits, behind one nginx (least_conn) on
127.0.0.1, SNORKY_REDIS_URL naming that many redis-server shards ("none": no Redis, the in-process broker; one
process only).  bench/loadgen.c, mode groups (C, one thread, epoll), all through nginx: {conns:,} connections,
connection i subscribed to its personal channel u<i> and to its group's channel g<i/{group}> (groups of {group});
{churners} more connections, each in a personal channel and one of the groups, {churn:g} of them per second closed
and opened again (reconnect + both subscribes) during both phases; {publishers} publisher connections sending
{size}-byte messages to the group channels round robin, one publish in {pevery} to a personal channel.  Saturation:
each publisher keeps {window} publishes unacknowledged for {sat:g} s (the p50/p99 there include that queue);
fixed rate: {rate:g} publishes/s for {rate_s:g} s (about {rate_deliv:,.0f} deliveries/s), latency from the
publisher's send to each subscriber's read (through nginx, a host, Redis, a host, nginx).  lost = what the
{conns:,} stable connections should have received - what they did (saturation / fixed rate).  Deliveries/s count
every delivery, the churners' too.  CPU from /proc over each phase (from the generator's start line to its result
line; schedstat, ns): every process of every host ("server"), nginx's master and worker, each shard's
redis-server.

This machine: {machine}.  Everything (hosts, nginx, Redis, the generator) shares its {cores} cores, and other
engineers ran tests on it at the same time: the load average before each cell is in the table, after each in
the raw data.  More processes here add hops and contention, not cores: read the rows for the cost of each piece
per delivery and per publish (server CPU-seconds, Redis µs per publish), not for what N real machines carry."""


def main(sc: Scenario, processes: list[int], shards: list[int], argv: list[str], out_dir: Path) -> int:
    build.build_all()
    cells = [(1, 0)] + [(p, s) for p in processes for s in shards]
    results = []
    for p, s in cells:
        print(f"[capacity] {p} process(es), {s or 'no'} shard(s); load {_loadavg()}", file=sys.stderr, flush=True)
        results.append(run_cell(p, s, sc))
    text = table(results, sc)
    hop = hop_table(results)
    print(text + "\n" + hop)
    now = _dt.datetime.now()
    out = out_dir / f"capacity-{now.date().isoformat()}-{platform.node() or 'host'}.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = NOTES.format(instance=INSTANCE, conns=sc.conns, group=sc.group, churners=sc.churners, churn=sc.churn,
                         publishers=sc.publishers, size=sc.size, pevery=sc.personal_every, window=sc.window,
                         sat=sc.saturation_s, rate=sc.rate, rate_s=sc.rate_s,
                         rate_deliv=sc.rate * (sc.group * (sc.personal_every - 1) + 1) / sc.personal_every,
                         machine=report.machine(), cores=os.cpu_count())
    out.write_text(f"# python -m bench --capacity, {now.isoformat(timespec='seconds')}\n\n"
                   f"`python -m bench {' '.join(argv)}`\n\n{text}\n"
                   f"The broker hop:\n\n{hop}\n{notes}\n\nRaw: {json.dumps(results)}\n")
    print(f"written to {out}")
    return 0 if all("errors" not in r for r in results) else 1

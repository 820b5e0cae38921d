"""The benchmark's markdown table and its dated results file."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path


def _n(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def _ms(r: dict | None) -> str:
    if not r or r.get("p50_ms", -1) < 0:
        return "—"
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"


def _cpu(r: dict | None, key: str) -> str:
    # /proc counts CPU in 10 ms ticks: too coarse for a run shorter than 0.5 s
    if not r or r.get("elapsed_s", 0) < 0.5:
        return "—"
    return f"{r[key]:.0%}"


def columns(sizes) -> list[str]:
    a, b = sizes.idle[0], sizes.idle[-1]
    return ["server", "fan-out deliveries/s", "publishes/s", "fan-out p50 / p99 ms (saturation)",
            f"p50 / p99 ms at {sizes.rate:g} publishes/s", "lost (saturation / fixed rate)",
            f"RPC calls/s ({sizes.rpc_clients} clients)", "RPC p50 / p99 ms", f"KB per idle conn @{a:,}",
            f"KB per idle conn @{b:,}", "handshakes/s", "server CPU (fan-out / RPC)",
            "generator CPU (fan-out / RPC)", "waited for a core: server / generator (fan-out)",
            f"Cursors: most clients with p99 < {sizes.cursor_p99_ms:g} ms (first N that failed: why)",
            "Cursors updates/s / notifications/s", "Cursors notification p50 / p99 ms",
            "Cursors reply p50 / p99 ms", "Cursors server CPU"]


CURSOR_CELLS = 5


def cursor_cells(r: dict) -> list[str]:
    if "cursors" not in r:
        return ["—"] * CURSOR_CELLS  # not run (an error above says why)
    c = r["cursors"]
    if c is None:
        return ["n/a"] * CURSOR_CELLS  # the target has no Cursors service
    at = c.get("at")
    most = f"{c['max_clients']:,}" if c.get("failed_at") or not at else f"≥ {c['max_clients']:,}"
    if c.get("failed_at"):
        most += f" ({c['failed_at']:,}: {c['failed_why']})"
    if not at:
        return [most] + ["—"] * (CURSOR_CELLS - 1)
    reply = {"p50_ms": at["reply_p50_ms"], "p99_ms": at["reply_p99_ms"]}
    return [most, f"{_n(at['updates_per_s'])} / {_n(at['notifications_per_s'])}", _ms(at), _ms(reply),
            _cpu({**at, "elapsed_s": at["seconds"]}, "server_cpu")]


def row(label: str, r: dict) -> str:
    if r.get("unavailable"):
        return f"| {label} | not measured: {r['unavailable']} |" + " |" * (12 + CURSOR_CELLS)
    f, fr, p, idle = r.get("fanout"), r.get("rate"), r.get("rpc"), r.get("idle") or {}
    levels = idle.get("levels", {})
    kb = [_n(v["kb_per_conn"], "{:.1f}") for v in levels.values()] + ["—"] * (2 - len(levels))
    lost = f"{_n(f and f['lost'])} / {_n(fr and fr['lost'])}"
    cpu = f"{_cpu(f, 'server_cpu')} / {_cpu(p, 'server_cpu')}"
    cells = [label, _n(f and f["deliveries_per_s"]), _n(f and f["publishes_per_s"]), _ms(f), _ms(fr), lost,
             _n(p and p["calls_per_s"]), _ms(p), kb[0], kb[-1], _n(idle.get("handshakes_per_s")), cpu,
             f"{_cpu(f, 'generator_cpu')} / {_cpu(p, 'generator_cpu')}",
             f"{_cpu(f, 'server_wait')} / {_cpu(f, 'generator_wait')}", *cursor_cells(r)]
    return "| " + " | ".join(cells) + " |"


def table(results: list[dict], sizes) -> str:
    cols = columns(sizes)
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    lines += [row(r["label"], r) for r in results]
    problems = [f"- {r['label']}: {e}" for r in results for e in r.get("errors", [])]
    logged = [f"- {r['label']}: " + "; ".join(f"{what} (x{n:,})" for what, n in r["server_log"].items())
              for r in results if r.get("server_log")]
    return ("\n".join(lines) + "\n" + ("\nProblems:\n" + "\n".join(problems) + "\n" if problems else "")
            + ("\nThe servers logged exceptions:\n" + "\n".join(logged) + "\n" if logged else ""))


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, load average {load} at the end"


def write(results: list[dict], sizes, argv: list[str], out_dir: Path, notes: str) -> Path:
    now = _dt.datetime.now()
    out = out_dir / f"{now.date().isoformat()}-{platform.node() or 'host'}.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# python -m bench, {now.isoformat(timespec='seconds')}\n\n"
                   f"`python -m bench {' '.join(argv)}` on {machine()}\n\n{table(results, sizes)}\n{notes}\n"
                   f"\nRaw: {json.dumps(results)}\n")
    return out

"""Reconnect storm: N clients connected, the server restarted, all reconnect at once.

    python -m bench.storm                       # 20,000 clients, gunicorn -w 2, default settings
    python -m bench.storm --clients 5000 --workers 1 --env SNORKY_CONNECT_RATE=0

The clients are bench/loadgen.c in ``storm`` mode (several processes, as one
process may not hold 20,000 descriptors here), behaving like snorky.js: a
failed attempt is retried after min(15 s, 500 ms x 2^n), half fixed and half
random; a closed connection is reopened after 250-500 ms.  The server is
restarted the way a deploy does it (SIGTERM: every WebSocket gets a 1001
close; then a new server on the same port).  Reports how long until all were
connected at first and again after the restart, and what the attempts met:
503s (the connection-rate limit, documented), refused connects (no server
listening during the restart), resets and other failures (must be 0).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.servers import ServerProcess, free_port  # noqa: E402

from .build import build_all  # noqa: E402


def _merge(rows: list[dict]) -> dict:
    out = {"conns": 0, "ready": 0, "seconds": 0.0, "attempts": 0, "refused_503": 0,
           "retry_after_max": 0, "connect_refused": 0, "reset_before_answer": 0,
           "other_failures": 0, "closed_by_server": 0}
    for r in rows:
        for k in out:
            out[k] = max(out[k], r[k]) if k in ("seconds", "retry_after_max") else out[k] + r[k]
    return out


def storm(clients: int = 20000, workers: int = 2, generators: int = 2, env: dict | None = None,
          retry_after: bool = False, timeout: float = 300.0) -> dict:
    loadgen = build_all()["loadgen"]
    port = free_port()
    mode = "embedded" if workers == 0 else "gunicorn-gevent"
    server_env = {"SNORKY_LOG_LEVEL": "WARNING", **(env or {})}

    def start():
        return ServerProcess(mode, app="wsgi:app", env=server_env, workers=max(1, workers), port=port)

    srv = start()
    gens = []
    try:
        per = [clients // generators + (1 if i < clients % generators else 0) for i in range(generators)]
        for n in per:
            gens.append(subprocess.Popen(
                [str(loadgen), "storm", "--port", str(port), "--conns", str(n),
                 "--concurrency", str(n), "--hold", str(timeout * 3),
                 "--retry-after", "1" if retry_after else "0"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        first = _merge([json.loads(g.stdout.readline()) for g in gens])
        t_restart = time.monotonic()
        srv.stop()  # SIGTERM: 1001 to every WebSocket
        down = time.monotonic() - t_restart
        srv = start()
        up = time.monotonic() - t_restart
        second = _merge([json.loads(g.stdout.readline()) for g in gens])
        second["seconds_since_sigterm"] = round(time.monotonic() - t_restart, 2)
        for g in gens:
            g.stdin.write("\n")
            g.stdin.flush()
        return {"clients": clients, "workers": workers, "generators": generators,
                "retry_after_honoured": retry_after, "env": server_env,
                "first_connect": first, "server_down_s": round(down, 2),
                "server_up_again_s": round(up, 2), "after_restart": second}
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
                g.wait(5)
        srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (0: embedded server)")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--retry-after", action="store_true",
                    help="clients honour Retry-After (non-browser clients; browsers cannot see it)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(e.split("=", 1) for e in args.env)
    result = storm(args.clients, args.workers, args.generators, env, args.retry_after)
    print(json.dumps(result, indent=2))
    bad = result["after_restart"]["other_failures"] + result["after_restart"]["reset_before_answer"]
    return 0 if result["after_restart"]["ready"] == args.clients and bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""python -m bench.outbox: how fast the PostgreSQL change feed delivers.

Starts the integration test app (embedded), a fresh database on the local
PostgreSQL with a captured table, one WebSocket subscriber and the outbox
relay; then writes N rows (one transaction, and one transaction per row) and
reports rows/s from the first write to the last delta received, and the
latency of single-row changes (commit -> delta at the subscriber).

    python -m bench.outbox [--rows 5000] [--singles 200]
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from snorky_sync.backend import HTTPTransport, SnorkyBackend  # noqa: E402
from snorky_sync.integrations import postgres as feed  # noqa: E402
from support.servers import API_KEY, ServerProcess  # noqa: E402
from support.wsclient import SnorkyTestClient  # noqa: E402

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--singles", type=int, default=200)
    args = ap.parse_args()
    name = "snorky_bench_" + secrets.token_hex(4)
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    srv = ServerProcess("embedded", app="tests.integration.testapp:app")
    relay = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE todos (id serial PRIMARY KEY, title text, list text DEFAULT 'x')")
            feed.install(conn, "todos", "Todo")
        backend = SnorkyBackend(HTTPTransport(srv.url + "/backend", key=API_KEY))
        ws = SnorkyTestClient(srv.ws_url + "/ws", timeout=60)
        ws.ok("datasync", "acquireSubscription",
              {"token": backend.authorize_subscription([{"dealer": "allTodos", "query": None}])})
        relay = feed.OutboxRelay(dsn, backend, poll_interval=1.0).start()

        def wait_deltas(n):
            for _ in range(n):
                ws.wait_for(lambda m: m.get("type") == "delta")

        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            with conn.transaction():
                conn.cursor().executemany("INSERT INTO todos (title) VALUES (%s)",
                                          [(f"row {i}",) for i in range(args.rows)])
            wait_deltas(args.rows)
            batch = args.rows / (time.perf_counter() - t0)

            t0 = time.perf_counter()
            latencies = []
            for i in range(args.singles):
                t = time.perf_counter()
                conn.execute("UPDATE todos SET title = %s WHERE id = %s", (f"single {i}", 1 + i))
                conn.commit()
                wait_deltas(1)
                latencies.append((time.perf_counter() - t) * 1000)
            singles = args.singles / (time.perf_counter() - t0)
        latencies.sort()
        print("| PostgreSQL change feed (outbox relay) | value |")
        print("|---|---:|")
        print(f"| {args.rows} rows in one transaction, write to last delta | {batch:,.0f} rows/s |")
        print(f"| one row per transaction, sequential | {singles:,.0f} rows/s |")
        print(f"| commit -> delta at the subscriber, p50 / p99 | "
              f"{statistics.median(latencies):.1f} / {latencies[int(len(latencies) * 0.99) - 1]:.1f} ms |")
        return 0
    finally:
        if relay is not None:
            relay.stop()
        srv.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    sys.exit(main())

"""DataSync deltas from a PostgreSQL table, whoever changes it (psql, a cron
job, another service): a trigger writes every change to an outbox table and
wakes a relay with NOTIFY; the relay publishes the outbox in order and
deletes what was delivered.

::

    python -m snorky_sync.integrations.postgres install --dsn "$DSN" --table todos --model Todo
    SNORKY_API_KEY=... python -m snorky_sync.integrations.postgres relay --dsn "$DSN" \\
        --backend-url http://127.0.0.1:8002/backend

or in Python: ``install(conn, "todos", "Todo")`` and
``OutboxRelay(dsn, backend).start()``.

Why an outbox and not NOTIFY payloads: a NOTIFY sent while no relay listens
is lost, and a payload is limited to 8000 bytes.  Rows of the outbox are
committed with the change itself, so nothing is lost while the relay is
down or restarting, and rows of any size pass.  Delivery is at least once:
the relay deletes a batch only after ``publishDeltas`` answered, so a relay
killed between the two sends that batch again when it restarts (a
subscriber may then see a delta twice; applying the same insert/update/delete
again leaves a DataSync collection as it was).  NOTIFY only wakes the relay;
it also looks every ``poll_interval`` seconds.  Several relays on one
outbox don't deliver a row twice (``FOR UPDATE SKIP LOCKED``) but may
interleave batches: run one.

The trigger skips updates that change nothing and, given ``columns``, keeps
only those columns in the delta's data.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["install", "remove", "OutboxRelay", "OUTBOX_TABLE", "CHANNEL", "row_delta"]

log = logging.getLogger("snorky_sync.integrations.postgres")

OUTBOX_TABLE = "snorky_sync_outbox"
CHANNEL = "snorky_sync_outbox"

_SETUP = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
    id bigserial PRIMARY KEY,
    model text NOT NULL,
    op text NOT NULL,
    new_data jsonb,
    old_data jsonb,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION snorky_sync_row(r jsonb, keep text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN keep IS NULL OR cardinality(keep) = 0 THEN r
           ELSE (SELECT coalesce(jsonb_object_agg(key, value), '{{}}'::jsonb)
                 FROM jsonb_each(r) WHERE key = ANY(keep)) END
$$;
CREATE OR REPLACE FUNCTION snorky_sync_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    keep text[] := TG_ARGV[1:TG_NARGS - 1];
BEGIN
    IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
        RETURN NULL;
    END IF;
    INSERT INTO {OUTBOX_TABLE} (model, op, new_data, old_data) VALUES (
        TG_ARGV[0], TG_OP,
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE snorky_sync_row(to_jsonb(NEW), keep) END,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE snorky_sync_row(to_jsonb(OLD), keep) END);
    PERFORM pg_notify('{CHANNEL}', TG_ARGV[0]);
    RETURN NULL;
END
$$;
"""


def _trigger_name(table: str) -> sql.Identifier:
    return sql.Identifier("snorky_sync_" + table.replace(".", "_"))


def _table(table: str) -> sql.Composable:
    return sql.Identifier(*table.split("."))


def install(conn: psycopg.Connection, table: str, model: str,
            columns: Sequence[str] | None = None) -> None:
    """Capture ``table``'s inserts, updates and deletes as deltas of ``model``
    (``columns``: only these in the data).  Idempotent; commits."""
    with conn.transaction():
        conn.execute(_SETUP)
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_trigger_name(table), _table(table)))
        args = sql.SQL(", ").join(sql.Literal(a) for a in [model, *(columns or ())])
        conn.execute(sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION snorky_sync_capture({})").format(
                _trigger_name(table), _table(table), args))
    log.info("capturing changes of %s as %r deltas", table, model)


def remove(conn: psycopg.Connection, table: str) -> None:
    """Stop capturing ``table`` (the outbox and what it holds stay).  Commits."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_trigger_name(table), _table(table)))


def row_delta(model: str, op: str, new: Any, old: Any) -> dict:
    """The DataSync delta of one outbox row."""
    if op == "INSERT":
        return {"type": "insert", "model": model, "data": new}
    if op == "DELETE":
        return {"type": "delete", "model": model, "data": old}
    return {"type": "update", "model": model, "newData": new, "oldData": old}


class OutboxRelay:
    """Publishes the outbox through ``backend`` (a SnorkyBackend), oldest first."""

    def __init__(self, dsn: str, backend, service: str = "datasync_backend",
                 batch_size: int = 500, poll_interval: float = 5.0) -> None:
        if not callable(getattr(backend, "publish_deltas", None)):
            raise TypeError("OutboxRelay(dsn, backend): backend is a SnorkyBackend, "
                            f"got {type(backend).__name__}")
        self.dsn = dsn
        self.backend = backend
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.delivered = 0
        self.failures = 0
        self._stop = threading.Event()
        self._runner = None

    def drain(self, conn: psycopg.Connection) -> int:
        """Deliver the outbox in batches until it is empty; returns how many rows.
        A batch whose publication fails stays in the outbox (the error is raised)."""
        total = 0
        while True:
            with conn.transaction():
                rows = conn.execute(
                    f"SELECT id, model, op, new_data, old_data FROM {OUTBOX_TABLE} "
                    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (self.batch_size,)).fetchall()
                if not rows:
                    return total
                self.backend.publish_deltas([row_delta(m, op, new, old) for _, m, op, new, old in rows],
                                            service=self.service)
                conn.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE id = ANY(%s)", ([r[0] for r in rows],))
            total += len(rows)
            self.delivered += len(rows)

    def run(self) -> None:
        """Listen and deliver until :meth:`stop` (reconnects after errors)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    while not self._stop.is_set():
                        self.drain(conn)
                        for _ in conn.notifies(timeout=self.poll_interval, stop_after=1):
                            pass
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.failures += 1
                log.error("outbox relay: %s: %s (retrying in %.1fs; nothing is lost, the rows stay)",
                          type(exc).__name__, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def start(self):
        """Run in the background: a greenlet under gevent's monkey-patching
        (psycopg then waits cooperatively), else a daemon thread."""
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent
            self._runner = gevent.spawn(self.run)
        else:
            self._runner = threading.Thread(target=self.run, name="snorky-outbox-relay", daemon=True)
            self._runner.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch in hand (its rows are deleted only if it was delivered)."""
        self._stop.set()
        runner = self._runner
        if runner is not None:
            runner.join(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snorky_sync.integrations.postgres",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {"install": "capture a table's changes (trigger + outbox; idempotent)",
             "remove": "stop capturing a table (the outbox and its rows stay)"}
    for name in ("install", "remove"):
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        p.add_argument("--dsn", required=True, help="the database (libpq connection string or URL)")
        p.add_argument("--table", required=True, help="the table (schema.table allowed)")
        if name == "install":
            p.add_argument("--model", required=True, help="the deltas' model name, e.g. Todo")
            p.add_argument("--columns", help="comma-separated: only these columns in the data")
    p = sub.add_parser("relay", help="publish the outbox to a snorky_sync backend (SNORKY_API_KEY)",
                       description="Publish the outbox, oldest first, through the backend at "
                                   "--backend-url; the key comes from SNORKY_API_KEY.")
    p.add_argument("--dsn", required=True, help="the database (libpq connection string or URL)")
    p.add_argument("--backend-url", required=True, help="e.g. http://127.0.0.1:8002/backend")
    p.add_argument("--service", default="datasync_backend", help="the DataSyncBackend's name")
    p.add_argument("--poll-interval", type=float, default=5.0,
                   help="seconds between looks at the outbox when no NOTIFY came (default 5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("install", "remove"):
        with psycopg.connect(args.dsn) as conn:
            if args.command == "install":
                install(conn, args.table, args.model,
                        [c.strip() for c in args.columns.split(",")] if args.columns else None)
            else:
                remove(conn, args.table)
        print(f"{args.command}: {args.table}")
        return 0
    from ..backend import HTTPTransport, SnorkyBackend

    key = os.environ.get("SNORKY_API_KEY")
    if not key:
        parser.error("relay: set SNORKY_API_KEY to the backend's key")
    relay = OutboxRelay(args.dsn, SnorkyBackend(HTTPTransport(args.backend_url, key=key)),
                        service=args.service, poll_interval=args.poll_interval)
    print("relaying the outbox to", args.backend_url, flush=True)
    try:
        relay.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

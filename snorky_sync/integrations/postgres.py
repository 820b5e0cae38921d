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

The same outbox carries PubSub publications (and DataSync deltas) an app
writes in its own transaction with :mod:`snorky_sync.integrations.outbox`
(``outbox.publish(conn, channel, message)``).

Why an outbox and not NOTIFY payloads: a NOTIFY sent while no relay listens
is lost, and a payload is limited to 8000 bytes.  Rows of the outbox are
committed with the change itself, so nothing is lost while the relay or
snorky_sync is down or restarting, and rows of any size pass.

Delivery is exactly once: the relay first numbers a batch (commits
``batch`` on its rows: a run of trigger rows becomes one ``publishDeltas``,
each app row one call), then publishes it with the ``idempotencyKey``
``outbox:<this database's origin>:<batch>``, then deletes it.  A relay
killed between publishing and deleting finds the numbered rows when it
restarts and publishes the same batch under the same key: the server
answers it as the first time and delivers nothing (its window, 120 s by
default, must outlast the relay's restart; in Redis with a Redis broker,
so any worker answers).  NOTIFY only wakes the relay; it also looks every
``poll_interval`` seconds.  Run one relay per outbox (a second one would
not deliver a row twice, but batches may interleave).

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
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .outbox import CHANNEL, OUTBOX_TABLE

if TYPE_CHECKING:
    import gevent

    from ..backend.connector import SnorkyBackend

__all__ = ["install", "remove", "setup", "OutboxRelay", "OUTBOX_TABLE", "CHANNEL", "row_delta"]

log = logging.getLogger("snorky_sync.integrations.postgres")

ORIGIN_TABLE = OUTBOX_TABLE + "_origin"

# A row is a trigger's change (model, op, new_data, old_data) or an app's call
# (service, command, params: integrations.outbox); batch: numbered for delivery
_TABLES = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
    id bigserial PRIMARY KEY,
    model text,
    op text,
    new_data jsonb,
    old_data jsonb,
    created timestamptz NOT NULL DEFAULT now(),
    service text,
    command text,
    params jsonb,
    batch bigint
);
CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_batch ON {OUTBOX_TABLE} (batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS {ORIGIN_TABLE} (origin text NOT NULL);
INSERT INTO {ORIGIN_TABLE} SELECT md5(random()::text || clock_timestamp()::text)
    WHERE NOT EXISTS (SELECT 1 FROM {ORIGIN_TABLE});
"""

# an outbox made by an earlier version (trigger rows only)
_UPGRADE = f"""
ALTER TABLE {OUTBOX_TABLE} ALTER COLUMN model DROP NOT NULL, ALTER COLUMN op DROP NOT NULL,
    ADD COLUMN IF NOT EXISTS service text, ADD COLUMN IF NOT EXISTS command text,
    ADD COLUMN IF NOT EXISTS params jsonb, ADD COLUMN IF NOT EXISTS batch bigint;
CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_batch ON {OUTBOX_TABLE} (batch) WHERE batch IS NOT NULL;
"""

_FUNCTIONS = f"""
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


def _setup(conn: psycopg.Connection) -> None:
    conn.execute(_TABLES)
    if not conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = %s AND column_name = 'batch'", (OUTBOX_TABLE,)).fetchone():
        conn.execute(_UPGRADE)


def setup(conn: psycopg.Connection) -> None:
    """Create the outbox (or bring an earlier version's up to date): what
    :mod:`~snorky_sync.integrations.outbox` writes to.  Idempotent; commits."""
    with conn.transaction():
        _setup(conn)


def install(conn: psycopg.Connection, table: str, model: str,
            columns: Sequence[str] | None = None) -> None:
    """Capture ``table``'s inserts, updates and deletes as deltas of ``model``
    (``columns``: only these in the data).  Idempotent; commits."""
    with conn.transaction():
        _setup(conn)
        conn.execute(_FUNCTIONS)
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


def row_delta(model: str, op: str, new: Any, old: Any) -> dict[str, Any]:
    """The DataSync delta of one outbox row."""
    if op == "INSERT":
        return {"type": "insert", "model": model, "data": new}
    if op == "DELETE":
        return {"type": "delete", "model": model, "data": old}
    return {"type": "update", "model": model, "newData": new, "oldData": old}


class OutboxRelay:
    """Publishes the outbox through ``backend`` (a SnorkyBackend), oldest first."""

    def __init__(self, dsn: str, backend: SnorkyBackend, service: str = "datasync_backend",
                 batch_size: int = 500, poll_interval: float = 5.0, max_backoff: float = 30.0) -> None:
        if not callable(getattr(backend, "publish_deltas", None)):
            raise TypeError("OutboxRelay(dsn, backend): backend is a SnorkyBackend, "
                            f"got {type(backend).__name__}")
        self.dsn = dsn
        self.backend = backend
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff  # seconds between attempts at most, after errors
        self.delivered = 0
        self.failures = 0
        self._stop = threading.Event()
        self._runner: gevent.Greenlet | threading.Thread | None = None

    def drain(self, conn: psycopg.Connection) -> int:
        """Deliver the outbox in batches until it is empty; returns how many
        rows (``conn`` in autocommit mode).  A batch whose publication fails
        stays in the outbox, numbered (the error is raised): it is published
        again, under the same key, first."""
        origin = conn.execute(f"SELECT min(origin) FROM {ORIGIN_TABLE}").fetchone()
        if origin is None or origin[0] is None:
            raise RuntimeError(f"{ORIGIN_TABLE} is empty: run setup() (or install) first")
        total = 0
        while True:
            batches = self._numbered(conn) or self._number(conn)
            if not batches:
                return total
            for batch, rows in batches:
                self._publish(f"outbox:{origin[0]}:{batch}", rows)
                conn.execute(f"DELETE FROM {OUTBOX_TABLE} WHERE batch = %s", (batch,))
                total += len(rows)
                self.delivered += len(rows)

    _COLUMNS = "id, model, op, new_data, old_data, service, command, params, batch"

    def _numbered(self, conn: psycopg.Connection) -> list[tuple[int, list[tuple[Any, ...]]]]:
        """The batches numbered and not deleted (a relay stopped in between)."""
        rows = conn.execute(f"SELECT {self._COLUMNS} FROM {OUTBOX_TABLE} WHERE batch IS NOT NULL "
                            "ORDER BY batch, id").fetchall()
        batches: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            batches.setdefault(row[-1], []).append(row)
        return list(batches.items())

    def _number(self, conn: psycopg.Connection) -> list[tuple[int, list[tuple[Any, ...]]]]:
        """Number the oldest rows into batches (committed before anything is
        published): a run of trigger rows is one batch, an app's row one."""
        batches: list[tuple[int, list[tuple[Any, ...]]]] = []
        with conn.transaction():
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM {OUTBOX_TABLE} WHERE batch IS NULL "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (self.batch_size,)).fetchall()
            for row in rows:
                if row[6] is None and batches and batches[-1][1][-1][6] is None:
                    batches[-1][1].append(row)
                else:
                    batches.append((row[0], [row]))
            for batch, members in batches:
                conn.execute(f"UPDATE {OUTBOX_TABLE} SET batch = %s WHERE id = ANY(%s)",
                             (batch, [r[0] for r in members]))
        return batches

    def _publish(self, key: str, rows: list[tuple[Any, ...]]) -> None:
        first = rows[0]
        if first[6] is None:  # a trigger's changes
            self.backend.publish_deltas([row_delta(r[1], r[2], r[3], r[4]) for r in rows],
                                        service=self.service, idempotency_key=key)
        else:                 # an app's call (integrations.outbox)
            self.backend.call(first[5], first[6], **first[7], idempotencyKey=key)

    def run(self) -> None:
        """Listen and deliver until :meth:`stop` (reconnects after errors)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    setup(conn)
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
                backoff = min(backoff * 2, self.max_backoff)

    def start(self) -> OutboxRelay:
        """Run in the background: a greenlet under gevent's monkey-patching
        (psycopg then waits cooperatively), else a daemon thread."""
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent
            self._runner = gevent.spawn(self.run)
        else:
            thread = threading.Thread(target=self.run, name="snorky-outbox-relay", daemon=True)
            self._runner = thread
            thread.start()
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
             "remove": "stop capturing a table (the outbox and its rows stay)",
             "setup": "create the outbox for integrations.outbox.publish (idempotent)"}
    for name in ("install", "remove", "setup"):
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        p.add_argument("--dsn", required=True, help="the database (libpq connection string or URL)")
        if name == "setup":
            continue
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
    if args.command == "setup":
        with psycopg.connect(args.dsn) as conn:
            setup(conn)
        print("setup: outbox", OUTBOX_TABLE)
        return 0
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

"""Publishing inside the app's database transaction (PostgreSQL): the
transactional outbox, for PubSub and DataSync.

::

    from snorky_sync.integrations import outbox

    with conn.transaction():                       # psycopg 3 (or a SQLAlchemy
        conn.execute("UPDATE orders SET ...")      # Session / Connection, or
        outbox.publish(conn, "orders", {"id": 7})  # Django's connection)

:func:`publish` (and :func:`publish_deltas`) writes a row in the outbox
table of :mod:`snorky_sync.integrations.postgres` in the caller's
transaction and nothing else: a rollback leaves nothing to deliver; after
the commit the relay (``OutboxRelay``, woken by NOTIFY) delivers the row
through the backend, exactly once (each row is published under an
``idempotencyKey`` the relay derives from it), also when snorky_sync was
down at commit time: the row waits in the table and the relay delivers it
when the server is back (or when the relay starts).  The web request never
waits for snorky_sync and never fails because it is down.

Create the table once with ``python -m snorky_sync.integrations.postgres
setup --dsn "$DSN"`` (the relay creates it too when it starts).  This
module needs no driver of its own: it writes through the object given.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import wire

__all__ = ["publish", "publish_deltas", "OUTBOX_TABLE", "CHANNEL"]

OUTBOX_TABLE = "snorky_sync_outbox"
#: the NOTIFY channel that wakes the relay
CHANNEL = "snorky_sync_outbox"

_INSERT = (f"INSERT INTO {OUTBOX_TABLE} (service, command, params) "
           "VALUES (%s, %s, CAST(%s AS jsonb))")
_NOTIFY = "SELECT pg_notify(%s, %s)"


def publish(db: Any, channel: Any, message: Any, service: str = "pubsub_backend") -> None:
    """Publish ``message`` to the PubSub ``channel`` once ``db``'s
    transaction commits (the backend ``service``: a ``PubSubBackend``).

    ``db``: a psycopg (3 or 2) connection or cursor, a SQLAlchemy
    ``Session`` or ``Connection``, or Django's ``connection``
    (``django.db.connection``, inside ``transaction.atomic()``)."""
    _write(db, service, "publish", {"channel": channel, "message": message})


def publish_deltas(db: Any, deltas: Iterable[dict[str, Any]], service: str = "datasync_backend") -> None:
    """Deliver DataSync ``deltas`` once ``db``'s transaction commits (for
    changes no model event sees: bulk updates, raw SQL)."""
    _write(db, service, "publishDeltas", {"deltas": list(deltas)})


def _write(db: Any, service: str, command: str, params: dict[str, Any]) -> None:
    if not isinstance(service, str) or not service:
        raise TypeError(f"outbox: service is a service name, got {type(service).__name__}")
    args = (service, command, wire.encode(params).decode("utf-8"))
    if any(c.__module__.startswith("sqlalchemy.") for c in type(db).__mro__):
        # Session (Flask-SQLAlchemy's too), scoped_session, Connection: named parameters
        from sqlalchemy import text

        db.execute(text(_INSERT.replace("%s", ":s", 1).replace("%s", ":c", 1).replace("%s", ":p", 1)),
                   {"s": args[0], "c": args[1], "p": args[2]})
        db.execute(text("SELECT pg_notify(:n, :s)"), {"n": CHANNEL, "s": service})
        return
    if callable(getattr(db, "execute", None)):  # psycopg 3 connection, a DB-API cursor
        db.execute(_INSERT, args)
        db.execute(_NOTIFY, (CHANNEL, service))
        return
    if callable(getattr(db, "cursor", None)):  # psycopg2 connection, Django's connection
        with db.cursor() as cursor:
            cursor.execute(_INSERT, args)
            cursor.execute(_NOTIFY, (CHANNEL, service))
        return
    raise TypeError("outbox: db is a psycopg connection or cursor, a SQLAlchemy Session or "
                    f"Connection, or Django's connection; got {type(db).__name__}")

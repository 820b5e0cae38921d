"""The transactional outbox (issue #25 items 2-3): PubSub publications and
DataSync deltas written in the app's own transaction
(snorky_sync.integrations.outbox) reach a real WebSocket subscriber after the
commit, never after a rollback, exactly once even when the relay is SIGKILLed
between publishing a batch and deleting it, and also when snorky_sync was
down at commit time.  Real PostgreSQL (tests/support/postgres.py), real
server (tests/integration/testapp.py, embedded)."""
import signal
import subprocess
import sys
import threading

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from snorky_sync.backend import HTTPTransport, SnorkyBackend
from snorky_sync.integrations import outbox
from snorky_sync.integrations import postgres as feed
from support.postgres import fresh_database
from support.servers import API_KEY, ROOT, ServerProcess, free_port
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

CHANNEL = "orders"


@pytest.fixture(scope="module")
def dsn():
    with fresh_database("snorky_outbox_") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL, "
                         "list text NOT NULL DEFAULT 'home', completed boolean NOT NULL DEFAULT false)")
            feed.install(conn, "todos", "Todo")
        yield url


@pytest.fixture
def db(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM todos")                      # its trigger writes to the outbox:
        conn.execute(f"DELETE FROM {feed.OUTBOX_TABLE}")      # emptied after
    return dsn


def backend_of(server):
    return SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY, timeout=5))


@pytest.fixture
def relay(db, testapp_server):
    r = feed.OutboxRelay(db, backend_of(testapp_server), poll_interval=0.5).start()
    yield r
    r.stop()


@pytest.fixture
def page(testapp_server):
    ws = SnorkyTestClient(testapp_server.ws_url + "/ws")
    ws.ok("pubsub", "subscribe", {"channel": CHANNEL})
    yield ws
    ws.close()


def outbox_rows(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT id, command, batch FROM {feed.OUTBOX_TABLE} ORDER BY id").fetchall()


def marker_after(ws, backend, text="marker"):
    """Publish ``text`` straight through the backend and read up to it: what
    the page got before it, in order."""
    backend.publish(CHANNEL, text)
    got = []
    while (msg := ws.next_message(CHANNEL, timeout=15)) != text:
        got.append(msg)
    return got


def test_a_publish_in_a_transaction_is_delivered_after_the_commit(relay, page, testapp_server):
    backend = backend_of(testapp_server)
    with psycopg.connect(relay.dsn) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO todos (title) VALUES ('paid')")
            outbox.publish(conn, CHANNEL, {"order": 1, "status": "paid"})
            outbox.publish(conn, CHANNEL, {"order": 2, "status": "paid"})
            assert marker_after(page, backend, "before the commit") == []    # not yet
    assert page.next_message(CHANNEL, timeout=15) == {"order": 1, "status": "paid"}
    assert page.next_message(CHANNEL, timeout=15) == {"order": 2, "status": "paid"}
    assert marker_after(page, backend) == []                                   # each once
    wait_for(lambda: outbox_rows(relay.dsn) == [], 15, "the outbox emptied")


def test_a_rolled_back_transaction_publishes_nothing(relay, page, testapp_server):
    with psycopg.connect(relay.dsn) as conn:
        outbox.publish(conn, CHANNEL, "rolled back (psycopg)")
        conn.rollback()
        with conn.transaction():
            outbox.publish(conn, CHANNEL, "kept")
            with pytest.raises(LookupError):
                with conn.transaction():           # a savepoint rolled back
                    outbox.publish(conn, CHANNEL, "rolled back (savepoint)")
                    raise LookupError("the view fails")
    engine = create_engine(relay.dsn.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as session:
        outbox.publish(session, CHANNEL, "rolled back (SQLAlchemy)")
        session.rollback()
        outbox.publish(session, CHANNEL, "committed (SQLAlchemy)")
        session.commit()
    engine.dispose()
    assert page.next_message(CHANNEL, timeout=15) == "kept"
    assert page.next_message(CHANNEL, timeout=15) == "committed (SQLAlchemy)"
    assert marker_after(page, backend_of(testapp_server)) == []


DIES_AFTER_PUBLISHING = """
import os, signal, sys
from snorky_sync.backend import HTTPTransport, SnorkyBackend
from snorky_sync.integrations.postgres import OutboxRelay

class DiesAfterPublishing(HTTPTransport):
    def send(self, message, json=None):
        reply = super().send(message, json=json)
        print("published", message["message"]["params"].get("idempotencyKey"), reply, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # answered, not yet deleted
        return reply

dsn, url, key = sys.argv[1:]
OutboxRelay(dsn, SnorkyBackend(DiesAfterPublishing(url, key=key))).run()
"""


@pytest.mark.parametrize("first", ["publish", "deltas"])
def test_a_relay_killed_between_publishing_and_deleting_delivers_each_row_once(db, page, testapp_server, first):
    backend = backend_of(testapp_server)
    todos = SnorkyTestClient(testapp_server.ws_url + "/ws")
    todos.ok("datasync", "acquireSubscription",
             {"token": backend.authorize_subscription([{"dealer": "allTodos", "query": None}])})
    try:
        with psycopg.connect(db) as conn:
            with conn.transaction():
                if first == "deltas":
                    conn.execute("INSERT INTO todos (title) VALUES ('one'), ('two')")
                for i in range(3):
                    outbox.publish(conn, CHANNEL, f"row {i}")
                if first == "publish":
                    conn.execute("INSERT INTO todos (title) VALUES ('one'), ('two')")
        out = subprocess.run([sys.executable, "-c", DIES_AFTER_PUBLISHING, db,
                              testapp_server.url + "/backend", API_KEY],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == -signal.SIGKILL, out.stderr
        assert "published outbox:" in out.stdout, out.stdout
        rows = outbox_rows(db)
        assert len(rows) == 5 and rows[0][2] is not None          # the first batch numbered, not deleted

        second = feed.OutboxRelay(db, backend, poll_interval=0.5).start()
        try:
            wait_for(lambda: outbox_rows(db) == [], 15, "the outbox emptied")
        finally:
            second.stop()
        assert marker_after(page, backend) == ["row 0", "row 1", "row 2"]    # once each
        backend.publish_deltas([{"type": "insert", "model": "Todo", "data": {"id": 0, "title": "marker"}}])
        titles = []
        while (title := todos.wait_for(lambda m: m.get("type") == "delta", 15)["delta"]["data"]["title"]) != "marker":
            titles.append(title)
        assert titles == ["one", "two"]
    finally:
        todos.close()


class Gate(HTTPTransport):
    """The relay's transport, held shut while the test restarts the server
    and subscribes (so the relay cannot deliver before the page is there)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open = threading.Event()
        self.open.set()

    def send(self, message, json=None):
        assert self.open.wait(60)
        return super().send(message, json=json)


def test_a_publish_committed_while_the_server_is_down_is_delivered_when_it_is_back(db):
    port = free_port()
    app = "tests.integration.testapp:app"
    server = ServerProcess("embedded", app=app, port=port)
    gate = Gate(server.url + "/backend", key=API_KEY, timeout=2)
    relay = feed.OutboxRelay(db, SnorkyBackend(gate), poll_interval=0.5, max_backoff=0.5).start()
    try:
        server.stop()
        with psycopg.connect(db) as conn:
            with conn.transaction():
                outbox.publish(conn, CHANNEL, "committed while down")
        wait_for(lambda: relay.failures >= 2, 30, "the relay failing to deliver while the server is down")
        assert [r[1] for r in outbox_rows(db)] == ["publish"]              # kept
        gate.open.clear()
        server = ServerProcess("embedded", app=app, port=port)
        ws = SnorkyTestClient(server.ws_url + "/ws")
        try:
            ws.ok("pubsub", "subscribe", {"channel": CHANNEL})
            gate.open.set()
            assert ws.next_message(CHANNEL, timeout=30) == "committed while down"
            assert marker_after(ws, backend_of(server)) == []
        finally:
            ws.close()
        wait_for(lambda: outbox_rows(db) == [], 15, "the outbox emptied")
    finally:
        gate.open.set()
        relay.stop()
        server.stop()

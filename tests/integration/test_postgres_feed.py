"""snorky_sync.integrations.postgres: changes made to a PostgreSQL table by anyone
(here: psql and plain SQL connections) reach a real WebSocket subscriber as
DataSync deltas through the outbox relay; nothing is lost while the relay is down."""
import subprocess
import sys

import psycopg
import pytest

from snorky_sync.backend import HTTPTransport, SnorkyBackend
from snorky_sync.integrations import postgres as feed
from support.postgres import fresh_database, psql
from support.servers import API_KEY, ROOT
from support.wsclient import SnorkyTestClient


@pytest.fixture(scope="module")
def dsn():
    with fresh_database("snorky_feed_") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL, "
                         "list text NOT NULL DEFAULT 'home', completed boolean NOT NULL DEFAULT false, "
                         "secret text)")
        yield url


@pytest.fixture(scope="module")
def server(testapp_server):
    return testapp_server


@pytest.fixture
def installed(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM todos")
        feed.install(conn, "todos", "Todo", columns=["id", "title", "list", "completed"])
        conn.execute(f"DELETE FROM {feed.OUTBOX_TABLE}")
    return dsn


@pytest.fixture
def relay(installed, server):
    r = feed.OutboxRelay(installed, SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY)),
                         poll_interval=0.5).start()
    yield r
    r.stop()


@pytest.fixture
def browser(server):
    backend = SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY))
    ws = SnorkyTestClient(server.ws_url + "/ws")
    ws.ok("datasync", "acquireSubscription",
          {"token": backend.authorize_subscription([{"dealer": "allTodos", "query": None}])})
    yield ws
    ws.close()


def next_delta(ws):
    return ws.wait_for(lambda m: m.get("type") == "delta", timeout=15)["delta"]


def run_sql(dsn, statement, params=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def test_changes_made_with_psql_become_deltas(relay, browser):
    def run_psql(statement):
        out = subprocess.run([psql(), relay.dsn, "-v", "ON_ERROR_STOP=1", "-qAtc", statement],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    todo_id = int(run_psql("INSERT INTO todos (title, secret) VALUES ('from psql', 'x') RETURNING id"))
    assert next_delta(browser) == {"type": "insert", "model": "Todo", "data": {
        "id": todo_id, "title": "from psql", "list": "home", "completed": False}}   # no "secret"
    run_psql(f"UPDATE todos SET completed = true WHERE id = {todo_id}")
    delta = next_delta(browser)
    assert delta["type"] == "update"
    assert (delta["oldData"]["completed"], delta["newData"]["completed"]) == (False, True)
    run_psql(f"UPDATE todos SET completed = true WHERE id = {todo_id}")      # no change: no delta
    run_psql(f"DELETE FROM todos WHERE id = {todo_id}")
    assert next_delta(browser) == {"type": "delete", "model": "Todo", "data": {
        "id": todo_id, "title": "from psql", "list": "home", "completed": True}}


def test_big_rows_rollbacks_and_transactions(relay, browser):
    big = "x" * 20000          # over NOTIFY's 8000-byte payload limit
    with psycopg.connect(relay.dsn) as conn:
        conn.execute("INSERT INTO todos (title) VALUES ('rolled back')")
        conn.rollback()
        with conn.transaction():
            conn.execute("INSERT INTO todos (title) VALUES (%s)", (big,))
            conn.execute("INSERT INTO todos (title) VALUES ('second')")
    assert next_delta(browser)["data"]["title"] == big                   # the rollback sent nothing
    assert next_delta(browser)["data"]["title"] == "second"


def test_nothing_is_lost_while_the_relay_is_down(installed, server, browser):
    run_sql(installed, "INSERT INTO todos (title) VALUES ('while down 1'), ('while down 2')")
    assert run_sql(installed, f"SELECT count(*) FROM {feed.OUTBOX_TABLE}") == [(2,)]
    relay = feed.OutboxRelay(installed, SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY)),
                             poll_interval=0.5).start()
    try:
        assert [next_delta(browser)["data"]["title"] for _ in range(2)] == ["while down 1", "while down 2"]
    finally:
        relay.stop()
    assert run_sql(installed, f"SELECT count(*) FROM {feed.OUTBOX_TABLE}") == [(0,)]


def test_a_failed_publication_keeps_the_rows(installed, server):
    dead = feed.OutboxRelay(installed, SnorkyBackend(HTTPTransport("http://127.0.0.1:9/backend", key=API_KEY,
                                                                   timeout=2)))
    run_sql(installed, "INSERT INTO todos (title) VALUES ('kept')")
    with psycopg.connect(installed, autocommit=True) as conn:
        with pytest.raises(Exception):
            dead.drain(conn)
    assert run_sql(installed, f"SELECT model, op FROM {feed.OUTBOX_TABLE}") == [("Todo", "INSERT")]


def test_install_and_remove_from_the_command_line(installed):
    out = subprocess.run([sys.executable, "-m", "snorky_sync.integrations.postgres", "remove",
                          "--dsn", installed, "--table", "todos"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    run_sql(installed, "INSERT INTO todos (title) VALUES ('not captured')")
    assert run_sql(installed, f"SELECT count(*) FROM {feed.OUTBOX_TABLE}") == [(0,)]
    out = subprocess.run([sys.executable, "-m", "snorky_sync.integrations.postgres", "install",
                          "--dsn", installed, "--table", "todos", "--model", "Todo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    run_sql(installed, "INSERT INTO todos (title) VALUES ('captured')")
    assert run_sql(installed, f"SELECT model, op, new_data->>'title' FROM {feed.OUTBOX_TABLE}") == [
        ("Todo", "INSERT", "captured")]

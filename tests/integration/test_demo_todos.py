"""The Todos demo's views against PostgreSQL: a real database server, not only SQLite.

On the tests' own PostgreSQL (support.postgres): a fresh database per run,
dropped afterwards.
"""
import subprocess

import psycopg
import pytest
import requests

from support.postgres import fresh_database, psql
from support.servers import ServerProcess, free_port
from support.wsclient import SnorkyTestClient


@pytest.fixture
def pg_database():
    with fresh_database("snorky_demo_") as url:
        yield url.replace("postgresql://", "postgresql+psycopg://")


def test_todos_demo_on_postgresql_emits_deltas(pg_database):
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                        env={"SNORKY_DEMO_DATABASE_URL": pg_database})
    try:
        api = srv.url + "/demos/todos/api"
        first = requests.get(api, timeout=10).json()
        assert first["todos"] == []
        page = SnorkyTestClient(srv.ws_url + "/ws")
        made = requests.post(api, json={"title": "in postgres"}, timeout=10).json()
        page.ok("datasync", "acquireSubscription", {"token": first["token"]})
        # on PostgreSQL the deltas come from the table's trigger, through the outbox relay
        assert page.wait_for(lambda m: m.get("type") == "delta", timeout=15)["delta"] == {
            "type": "insert", "model": "Todo", "data": made}
        requests.patch(f"{api}/{made['id']}", json={"completed": True}, timeout=10)
        delta = page.wait_for(lambda m: m.get("type") == "delta", timeout=15)["delta"]
        assert delta["type"] == "update" and delta["newData"]["completed"] is True
        assert requests.get(api, timeout=10).json()["todos"] == [dict(made, completed=True)]
        # a row inserted by hand, with psql, shows up too
        dsn = pg_database.replace("postgresql+psycopg", "postgresql")
        out = subprocess.run([psql(), dsn, "-qAtc",
                              "INSERT INTO snorky_demo_todos (title, completed) VALUES ('by hand', false) "
                              "RETURNING id"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        delta = page.wait_for(lambda m: m.get("type") == "delta", timeout=15)["delta"]
        assert delta == {"type": "insert", "model": "Todo",
                         "data": {"id": int(out.stdout.strip()), "title": "by hand", "completed": False}}
        # each change once (the app's own commits are not published twice): a row
        # inserted after them all is the next delta
        out = subprocess.run([psql(), dsn, "-qAtc",
                              "INSERT INTO snorky_demo_todos (title, completed) VALUES ('marker', false) "
                              "RETURNING id"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert page.nothing_before(lambda m: m.get("type") == "delta")["delta"]["data"]["title"] == "marker"
        page.close()
    finally:
        srv.stop()
    with psycopg.connect(pg_database.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT title, completed FROM snorky_demo_todos ORDER BY id").fetchall() == [
            ("in postgres", True), ("by hand", False), ("marker", False)]

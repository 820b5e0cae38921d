"""The Todos demo's views against PostgreSQL: a real database server, not only SQLite.

Uses the PostgreSQL on 127.0.0.1:5432 (trust auth, as on the CI machine); a
fresh database per run, dropped afterwards.  Skipped only when no PostgreSQL
answers there.
"""
import secrets

import pytest
import requests

from support.servers import ServerProcess, free_port
from support.wsclient import SnorkyTestClient

psycopg = pytest.importorskip("psycopg")
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


@pytest.fixture
def pg_database():
    try:
        admin = psycopg.connect(ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    name = "snorky_demo_" + secrets.token_hex(4)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_todos_demo_on_postgresql_emits_deltas(pg_database):
    port = free_port()
    srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                        env={"SNORKY_DEMO_DATABASE_URL": pg_database})
    try:
        api = srv.url + "/demos/todos/api"
        first = requests.get(api, timeout=10).json()
        assert first["todos"] == []
        page = SnorkyTestClient(srv.ws_url + "/ws")
        made = requests.post(api, json={"title": "in postgres"}, timeout=10).json()  # buffered
        page.ok("datasync", "acquireSubscription", {"token": first["token"]})
        assert page.notifications[-1]["message"] == {
            "type": "delta", "delta": {"type": "insert", "model": "Todo", "data": made}}
        requests.patch(f"{api}/{made['id']}", json={"completed": True}, timeout=10)
        delta = page.recv()["message"]["delta"]
        assert delta["type"] == "update" and delta["newData"]["completed"] is True
        assert requests.get(api, timeout=10).json()["todos"] == [dict(made, completed=True)]
        page.close()
    finally:
        srv.stop()
    with psycopg.connect(pg_database.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT title, completed FROM snorky_demo_todos").fetchall() == [
            ("in postgres", True)]

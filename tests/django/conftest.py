"""A real Django project (tests/django/todo_project) against a real snorky_sync
server (run_snorky_server.py, 0.1's demo server ported), on SQLite and on
PostgreSQL (the tests' own, support.postgres: a fresh database per run)."""
import os
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psycopg
import pytest

from support import postgres

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_tmp = tempfile.mkdtemp(prefix="snorky-django-")
os.environ["TODO_SQLITE_PATH"] = os.path.join(_tmp, "todo.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
# Playwright's sync API (tests/browser, same pytest process) leaves an asyncio
# loop registered on this thread; Django would then refuse every query as
# "async context".  These tests are synchronous code.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"

_pg = postgres.server()
_pg_name = "snorky_django_" + secrets.token_hex(4)
with psycopg.connect(_pg.admin_dsn, autocommit=True) as admin:
    admin.execute(f'CREATE DATABASE "{_pg_name}"')
os.environ.update({"TODO_PG_NAME": _pg_name, "TODO_PG_PORT": str(_pg.port)})

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

for alias in connections:
    call_command("migrate", run_syncdb=True, database=alias, verbosity=0)


def pytest_sessionfinish(session, exitstatus):
    connections.close_all()
    with psycopg.connect(_pg.admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{_pg_name}" WITH (FORCE)')


def _empty(alias):
    from todo_app.models import Note, Task
    Task.objects.using(alias).all()._raw_delete(alias)   # no signals: nothing published
    Note.objects.using(alias).all()._raw_delete(alias)
    return alias


@pytest.fixture(params=["default", "pg"])
def db(request):
    """The database alias of this test, emptied: SQLite, then PostgreSQL."""
    return _empty(request.param)


@pytest.fixture
def default_db():
    """The database the HTTP views use (SQLite), emptied."""
    return _empty("default")


@pytest.fixture(scope="session")
def snorky_server():
    from django.conf import settings
    from support.servers import API_KEY, ServerProcess, free_port

    backend_port = free_port()
    srv = ServerProcess(args=[str(HERE / "run_snorky_server.py")], env={"BACKEND_PORT": str(backend_port)})
    settings.SNORKY_BACKEND_URL = f"http://127.0.0.1:{backend_port}/backend"
    settings.SNORKY_API_KEY = API_KEY
    srv.backend_url = settings.SNORKY_BACKEND_URL
    yield srv
    srv.stop()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def django_http(snorky_server):
    """The Django project served over real HTTP (wsgiref, in a thread of this process)."""
    from django.core.wsgi import get_wsgi_application

    httpd = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()

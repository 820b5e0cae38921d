"""Every code snippet of docs/ runs, as a reader would run it.

A fenced ``python`` block runs in a fresh interpreter and must exit 0. A
comment just before the fence says how, when the block needs more than itself:

    <!-- snippet: prelude=NAME then=NAME serve=NAME against=testapp main -->

- ``prelude=NAME``: the code of ``PRELUDES[NAME]`` runs first (what the page
  says exists already: your Flask ``app``, ``snorky``, ``pubsub``...);
- ``then=NAME``: ``THEN[NAME]`` runs after it, in the same namespace, and
  checks what the snippet made;
- ``serve=NAME``: the snippet's ``app`` is served for real on a free port and
  ``SERVED[NAME]`` talks to it over WebSocket/HTTP;
- ``main``: the snippet is a program (``if __name__ == "__main__"``); it runs
  as one, with its port 8002 replaced by a free port, and is checked by
  ``SERVED[NAME]`` of ``serve=NAME``;
- ``against=testapp``: a real server (tests/integration/testapp.py) is
  started first and the snippet's 8002 is replaced by its port.

``js``/``html`` blocks (docs/javascript.md) run in Chromium against a real
server: tests/docs/test_js_snippets.py.  ``sh`` blocks are command lines: each ``python -m MODULE SUB --opt ...`` in
them must name a subcommand and options that ``--help`` lists; ``bash -n``
checks the rest. A block of any other language fails the test unless it is
listed in ``NOT_CODE`` (configuration files, wire traces).
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest
import requests

from support.servers import API_KEY, ROOT, ServerProcess
from support.wsclient import SnorkyTestClient

DOCS = ROOT / "docs"
FENCE = re.compile(r"(?:<!-- snippet:([^>]*)-->\n)?^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)
NOT_CODE = {"text"}  # shown, not run: help output, wire traces (nginx: test_nginx_snippets.py)
SKIP_LANGS = {"{toctree}", "{eval-rst}", "{include}"}


@dataclass
class Snippet:
    page: str
    line: int
    lang: str
    code: str
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def collect() -> list[Snippet]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        text = path.read_text()
        for m in FENCE.finditer(text):
            opts = {}
            for word in (m.group(1) or "").split():
                key, _, value = word.partition("=")
                opts[key] = value or True
            line = text[:m.start(2)].count("\n") + 1
            found.append(Snippet(str(path.relative_to(ROOT)), line, m.group(2), m.group(3), opts))
    return found


SNIPPETS = collect()
PYTHON = [s for s in SNIPPETS if s.lang == "python"]
SHELL = [s for s in SNIPPETS if s.lang == "sh"]


# What the pages say exists before their snippet -----------------------------------------------

PRELUDES = {
    # a Flask app of yours with snorky_sync mounted and a PubSub service
    "app": """
        import os
        os.environ.setdefault("SNORKY_API_KEY", "docs-backend-key-0123456789")
        from flask import Flask
        from snorky_sync import ServiceRegistry, Snorky
        from snorky_sync.services.pubsub import PubSubBackend, PubSubService
        app = Flask(__name__)
        snorky = Snorky(app)
        pubsub = PubSubService("pubsub")
        registry = ServiceRegistry([pubsub])
        snorky.websocket("/pubsub", registry)
    """,
    "flask_app": """
        from flask import Flask
        app = Flask(__name__)
    """,
    "identities": """
        import os
        os.environ.setdefault("SNORKY_TOKEN_SECRET", "docs-token-secret-0123456789")
        from flask import Flask
        from snorky_sync import ServiceRegistry, Snorky
        from snorky_sync.services.chat import ChatService
        app = Flask(__name__)
        app.secret_key = "docs"
        snorky = Snorky(app)
        registry = ServiceRegistry([ChatService("chat")])
        class user:
            id = "ann"
    """,
    "connector": """
        import os
        os.environ.setdefault("SNORKY_TOKEN_SECRET", "docs-token-secret-0123456789")
        KEY = os.environ["SNORKY_API_KEY"]
        list_id = 7
        todo = {"id": 1, "list": 7, "title": "milk"}
        class user:
            id = "ann"
    """,
    "history": """
        from snorky_sync.services.chat import ChatService
        from snorky_sync.services.datasync import DataSyncService
        from snorky_sync.services.pubsub import PubSubService
        dealers = []
    """,
    "sqlalchemy": """
        import os
        from flask import Flask, jsonify
        from flask_sqlalchemy import SQLAlchemy
        from snorky_sync import ServiceRegistry
        from snorky_sync.services.datasync import BroadcastDealer, DataSyncBackend, DataSyncService
        class AllTodos(BroadcastDealer):
            name = "allTodos"
            model = "Todo"
        app = Flask(__name__)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
        db = SQLAlchemy(app)
        datasync = DataSyncService("datasync", [AllTodos])
        backend_registry = ServiceRegistry([DataSyncBackend("datasync_backend", datasync)])
    """,
    "django": """
        import sys, types
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "docsapp"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            SNORKY_BACKEND_URL="http://127.0.0.1:9/backend", SNORKY_API_KEY="docs-backend-key-0123456789")
        import tempfile
        pkg = types.ModuleType("docsapp"); pkg.__path__ = [tempfile.gettempdir()]
        sys.modules["docsapp"] = pkg
        django.setup()
        __name__ = "docsapp.models"   # the snippet is the app's models.py (and its views)
    """,
}

THEN = {
    "backend": """
        from snorky_sync.wire import encode
        c = app.test_client()
        r = c.post("/backend", data='{"service": "pubsub_backend", "message": {"command": "publish", '
                   '"params": {"channel": "c", "message": 1}, "callId": 1}}',
                   headers={"X-Backend-Key": os.environ["SNORKY_API_KEY"]})
        assert r.status_code == 200, r.status_code
        assert r.get_json()["message"] == {"type": "response", "callId": 1, "data": None}, r.get_json()
        assert c.post("/backend", data="{}", headers={"X-Backend-Key": "wrong-key-0123456789"}).status_code == 401
    """,
    "identities": """
        assert tokens.verify(token) == "ann"
        rules = {r.rule for r in app.url_map.iter_rules()}
        assert {"/ws", "/ws-token"} <= rules, rules
    """,
    "history": """
        assert pubsub.history_size == 1000 and pubsub.history_ttl == 300
        assert chat.history_size == 200
        assert datasync.resume_window == 60
    """,
    "idempotency": """
        from snorky_sync.metrics import counters
        before = counters["idempotent_duplicates"]
        backend.publish("orders", {"id": 7, "status": "paid"}, idempotency_key=key)   # a retry
        assert counters["idempotent_duplicates"] == before + 1, "the retry was published again"
        assert len(pubsub.idempotency.local) == 1
    """,
    "pubsub_idempotency": """
        assert pubsub.idempotency.window == 300.0
        try:
            PubSubService("p", idempotency_window=0)
        except ValueError as exc:
            assert "idempotency_window" in str(exc)
        else:
            raise AssertionError("a window of 0 accepted")
    """,
    "outbox": """
        import sys
        sys.path.insert(0, "tests")
        import psycopg
        from support.postgres import fresh_database
        from snorky_sync.integrations import postgres
        with fresh_database("snorky_docs_") as dsn, psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
            conn.execute("INSERT INTO orders VALUES (7, 'new')")
            conn.commit()
            postgres.setup(conn)
            mark_paid(conn, 7)
            rows = conn.execute("SELECT service, command, params FROM snorky_sync_outbox ORDER BY id").fetchall()
            assert rows == [("pubsub_backend", "publish", {"channel": "orders", "message": {"id": 7, "status": "paid"}}),
                            ("pubsub_backend", "publish", {"channel": "user#7", "message": "receipt"})], rows
            conn.commit()
    """,
    "datasync": """
        assert sorted(datasync.dealers_by_name) == ["todosByList", "todosFilter"]
        assert TodosByList().get_key_for_model({"list": 3}) == 3
    """,
    "porting": """
        assert pubsub.can_publish(None, "news") is False
        assert sorted(frontend_registry.services) == ["pubsub"]
        assert sorted(backend_registry.services) == ["pubsub_backend"]
    """,
    "pubsub_hook": """
        s = ReadOnlyNews("pubsub")
        assert s.can_publish(None, "news") is False and s.can_publish(None, "chat") is True
    """,
    "pubsub_limits": """
        assert (pubsub.max_subscriptions, pubsub.max_channel_size) == (50, 256)
        assert type(pubsub).max_subscriptions == 1000
    """,
    "namespaces": """
        for name in ("pubsub", "chat"):
            svc = registry.get_service(name)
            assert svc.namespaces is namespaces
            assert svc.history.sizes("public:news") == 50 and svc.history.sizes("misc") == 10
        assert not namespaces.may_publish(anonymous, "misc") and namespaces.may_publish(alice, "misc")
        assert not namespaces.may_publish(alice, "room:1", lambda: False)
    """,
    "chat_limits": """
        assert (chat.max_channels, chat.max_channel_size, chat.max_message_size) == (20, 256, 4096)
    """,
    "cursors_limits": """
        assert (cursors.max_documents, cursors.max_document_size, cursors.max_cursors,
                cursors.max_cursor_size, cursors.MAX_CURSORS) == (20, 256, 4, 1024, 4)
    """,
    "datasync_limits": """
        assert (datasync.max_subscriptions, datasync.max_pending, datasync.max_pending_per_requester,
                datasync.max_buffered_deltas, datasync.MAX_PENDING) == (100, 1000, 10, 500, 1000)
    """,
    "messaging_limits": """
        assert (messaging.max_names, messaging.max_name_size, messaging.max_names_per_client) == (5, 64, 5)
    """,
    "messaging": """
        class Anon:
            identity = None
        assert messaging.is_name_allowed(Anon(), "bob") is False
    """,
    "sqlalchemy": """
        sent = []
        forward = backend.transport.send
        backend.transport.send = lambda message, *a, **k: sent.append(message) or forward(message, *a, **k)
        with app.app_context():
            db.create_all()
            db.session.add(Todo(title="milk"))
            db.session.commit()
            r = app.test_client().get("/api/todos", headers={"X-Snorky": "Subscribe"})
            assert r.status_code == 200 and r.get_json() == ["milk"], r.data
            assert r.headers.get("X-Subscription-Token"), dict(r.headers)
        assert any("publishDeltas" in str(m) and "milk" in str(m) for m in sent), sent
    """,
    "django": """
        assert Task.jsonify
        assert TaskViewSet.dealer == "AllTasks"
        from snorky_sync.backend.django import rest_framework as rf
        assert issubclass(TaskViewSet, rf.ListSubscribeModelMixin)
    """,
}


# Talking to a served snippet ----------------------------------------------------------------------

def _pubsub_round_trip(srv, path, service):
    a, b = SnorkyTestClient(srv.ws_url + path), SnorkyTestClient(srv.ws_url + path)
    try:
        assert a.call(service, "subscribe", {"channel": "news"}) == {"type": "response", "callId": 1, "data": None}
        b.ok(service, "publish", {"channel": "news", "message": "hello"})
        assert a.recv() == {"service": service, "message": {"type": "message", "channel": "news", "message": "hello"}}
    finally:
        a.close()
        b.close()


def served_seed(srv):
    _pubsub_round_trip(srv, "/ws", "messaging")
    assert "Snorky running..." in srv.log()


def served_mounted(srv):
    _pubsub_round_trip(srv, "/realtime", "pubsub")


def served_calculator(srv):
    c = SnorkyTestClient(srv.ws_url + "/ws")
    try:
        assert c.call("calc", "add", {"a": 2})["data"] == 2
        assert c.call("calc", "divide", {"a": 1, "b": 0})["message"] == "Division by zero"
        assert c.call("calc", "slowSquare", {"x": 7})["data"] == 49
    finally:
        c.close()


def served_ownapp(srv):
    """docs/scaling.md's app in one process (tests/cluster/test_own_app.py runs it on
    two gunicorn workers with Redis)."""
    _pubsub_round_trip(srv, "/ws", "pubsub")
    assert requests.get(srv.url + "/healthz", timeout=5).json()["broker"]["state"] == "local"
    r = requests.get(srv.url + "/metrics", headers={"X-Backend-Key": API_KEY}, timeout=5)
    assert r.status_code == 200 and "snorky_websockets_open" in r.text


def served_poll(srv):
    """docs/writing-a-service.md's poll in one process (tests/cluster/test_poll_page.py runs
    it on two gunicorn workers with Redis)."""
    a, b = SnorkyTestClient(srv.ws_url + "/ws"), SnorkyTestClient(srv.ws_url + "/ws")
    try:
        assert a.ok("poll", "watch", {"poll": "lunch"}) == {}
        assert b.ok("poll", "vote", {"poll": "lunch", "option": "pizza"}) == 1
        assert a.wait_for(lambda m: m.get("type") == "votes", timeout=10) == {
            "type": "votes", "poll": "lunch", "option": "pizza", "votes": 1}
        assert b.ok("poll", "watch", {"poll": "lunch"}) == {"pizza": 1}
        assert b.call("poll", "vote", {"poll": "lunch", "option": "soup"})["message"] == "Unknown option"
    finally:
        a.close()
        b.close()


SERVED = {"seed": served_seed, "mounted": served_mounted, "calculator": served_calculator,
          "ownapp": served_ownapp, "poll": served_poll}
# what a served snippet's app is mounted with, when the page leaves that to the reader
SERVE_WITH = {
    "calculator": """
        from flask import Flask
        from snorky_sync import ServiceRegistry, Snorky
        app = Flask(__name__)
        Snorky(app).websocket("/ws", ServiceRegistry([CalculatorService("calc")]))
    """,
}


def _program(snippet: Snippet, port: int | None = None) -> str:
    opts = snippet.options
    code = snippet.code
    if port is not None:
        code = code.replace("8002", str(port))
    parts = []
    if "prelude" in opts:
        parts.append(textwrap.dedent(PRELUDES[opts["prelude"]]))
    parts.append(code)
    if "then" in opts:
        parts.append(textwrap.dedent(THEN[opts["then"]]))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def testapp():
    srv = ServerProcess(app="tests.integration.testapp:app")
    yield srv
    srv.stop()


def test_every_block_is_known():
    """A block in a language this test cannot run fails, so none slips by."""
    unknown = [f"{s} ({s.lang})" for s in SNIPPETS
               if s.lang not in {"python", "sh", "js", "html", "nginx", *NOT_CODE, *SKIP_LANGS}]
    assert not unknown, unknown
    assert len(PYTHON) >= 15  # the collector found the pages' snippets


@pytest.mark.parametrize("snippet", PYTHON, ids=str)
def test_python_snippet(snippet, request):
    opts = snippet.options
    if "serve" in opts:
        check = SERVED[opts["serve"]]
        if "main" in opts:
            from support.servers import free_port
            port = free_port()
            srv = ServerProcess(args=["-c", _program(snippet, port)], port=port)
        else:
            program = _program(snippet) + "\n" + textwrap.dedent(SERVE_WITH.get(opts["serve"], "")) + (
                "\nimport os\nfrom snorky_sync import serve\nserve(app, '127.0.0.1', int(os.environ['PORT']))\n")
            srv = ServerProcess(args=["-c", program])
        try:
            check(srv)
        finally:
            srv.stop()
        return
    env = None
    program = _program(snippet)
    if opts.get("against") == "testapp":
        srv = request.getfixturevalue("testapp")
        program = _program(snippet, srv.port)
        import os
        env = {**os.environ, "SNORKY_API_KEY": API_KEY, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, f"{snippet} failed:\n{program}\n{out.stderr[-3000:]}"


def test_connector_snippet_reaches_the_server(testapp):
    """The connector snippet's publish arrives at a subscriber of the real server."""
    (snippet,) = [s for s in PYTHON if s.options.get("against") == "testapp"]
    c = SnorkyTestClient(testapp.ws_url + "/ws")
    try:
        c.ok("pubsub", "subscribe", {"channel": "news"})
        import os
        out = subprocess.run([sys.executable, "-c", _program(snippet, testapp.port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "SNORKY_API_KEY": API_KEY, "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0, out.stderr[-3000:]
        assert c.recv()["message"] == {"type": "message", "channel": "news", "message": {"title": "Hello"}}
    finally:
        c.close()


def _help(module: str, sub: str | None = None) -> str:
    args = [sys.executable, "-m", module] + ([sub] if sub else []) + ["--help"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("snippet", SHELL, ids=str)
def test_shell_snippet(snippet):
    code = snippet.code.replace("\\\n", " ")
    syntax = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    for m in re.finditer(r"python3? -m ([\w.]+)((?: [^\s&|;]+)*)", code):
        module, rest = m.group(1), m.group(2).split()
        if module in ("venv", "pip", "pytest", "gunicorn"):
            continue
        sub = rest[0] if rest and not rest[0].startswith("-") else None
        text = _help(module, sub)
        for opt in (w.split("=")[0] for w in rest if w.startswith("--")):
            assert opt in text, f"{snippet}: {module} {sub or ''} has no option {opt}"
    for extra in re.findall(r'-e "\.\[([\w,]+)\]"', code):
        pyproject = (ROOT / "pyproject.toml").read_text()
        for name in extra.split(","):
            assert re.search(rf"(?m)^{name} = \[", pyproject), f"{snippet}: no [{name}] extra"


def test_served_root_command_answers():
    """The README's and getting-started's run command: `python -m snorky_sync serve` serves the demos."""
    srv = ServerProcess(args=["-m", "snorky_sync", "serve"])
    try:
        assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(srv.url + "/demos/pubsub", timeout=5).status_code == 200
    finally:
        srv.stop()

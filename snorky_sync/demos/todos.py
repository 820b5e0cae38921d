"""The TodoMVC demo's server side: Flask-SQLAlchemy views that emit DataSync deltas.

The flow every DataSync application follows (protocol.md §3):

1. ``GET /demos/todos/api`` asks Snorky for a subscription token *first*
   (``authorize_subscription``), *then* queries the database, and returns
   both: a change committed between the two is buffered by Snorky and
   delivered on acquisition, so the page misses nothing.
2. ``POST`` / ``PATCH`` / ``DELETE`` change the database and commit; the
   model is :func:`~snorky_sync.integrations.sqlalchemy.subscribable`, so the
   commit publishes the matching deltas (insert / update / delete) to every
   page — no publishing code in the views.  ``GET`` with ``X-Snorky:
   Subscribe`` also answers with ``X-Subscription-Token`` (0.1's convention).
   On PostgreSQL the table has a trigger instead
   (:mod:`snorky_sync.integrations.postgres`): a row changed with ``psql``
   shows up in the open pages too.
"""
from __future__ import annotations

from flask import jsonify, request

from ..endpoints.admission import ConnectRate
from ..integrations.flask_views import request_requester, subscription_in_response
from ..integrations.sqlalchemy import DeltaPublisher, subscribable
from ..services.datasync import BroadcastDealer

MODEL = "Todo"
MAX_TITLE = 200


class AllTodos(BroadcastDealer):
    """Every page subscribed to the list gets every change of it."""

    name = "demoTodos"
    model = MODEL


def init_todos(app, bp, backend, datasync, database_url: str) -> None:
    from flask_sqlalchemy import SQLAlchemy

    app.config.setdefault("SQLALCHEMY_DATABASE_URI", database_url)
    db = SQLAlchemy(app)

    @subscribable(model=MODEL)
    class Todo(db.Model):  # type: ignore[name-defined]  # Flask-SQLAlchemy's per-app base
        __tablename__ = "snorky_demo_todos"
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String(MAX_TITLE), nullable=False)
        completed = db.Column(db.Boolean, nullable=False, default=False)

        def as_dict(self) -> dict:
            return {"id": self.id, "title": self.title, "completed": self.completed}

    with app.app_context():
        db.create_all()
        on_postgres = db.engine.dialect.name == "postgresql"
        if on_postgres:
            dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    if on_postgres:
        # On PostgreSQL every change of the table is a delta, whoever makes it
        # (this app, psql, a cron job): a trigger and the outbox relay.
        import psycopg

        from ..integrations import postgres

        with psycopg.connect(dsn) as conn:
            postgres.install(conn, Todo.__tablename__, MODEL, ["id", "title", "completed"])
        postgres.OutboxRelay(dsn, backend, poll_interval=2.0).start()
    else:
        # Elsewhere the session's commits publish the changes made through it.
        DeltaPublisher(backend).attach(db.session)
    if AllTodos.name not in datasync.dealers_by_name:
        datasync.register_dealer(AllTodos)

    def bad(text):
        return jsonify(error=text), 400

    # The API costs a query (and a DataSync authorization) per call: one
    # address may call it SNORKY_DEMO_API_RATE times a second (bursts of twice
    # that), as a public app would with nginx's limit_req; past it 429
    settings = app.extensions["snorky_sync"].settings
    api_rate = ConnectRate(per_ip_rate=settings.demo_api_rate, per_ip_burst=2 * settings.demo_api_rate,
                           trusted_proxies=settings.trusted_proxies)

    @bp.before_request
    def limit_api():
        if not api_rate.enabled or not request.path.startswith("/demos/todos/api"):
            return None
        retry = api_rate.admit(request.environ)
        if retry is None:
            return None
        return jsonify(error="too many requests"), 429, {"Retry-After": str(retry)}

    def valid_title(data):
        title = data.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
            return None
        return title.strip()

    @bp.get("/demos/todos/api")
    @subscription_in_response(backend, [{"dealer": AllTodos.name, "query": None}])
    def todos_list():
        # named by its address: one visitor reloading in a loop evicts only its own
        # pending subscriptions (SNORKY_MAX_PENDING_PER_REQUESTER), nobody else's
        token = backend.authorize_subscription([{"dealer": AllTodos.name, "query": None}],
                                               requester=request_requester())
        todos = [t.as_dict() for t in db.session.execute(db.select(Todo).order_by(Todo.id)).scalars()]
        return jsonify(token=token, todos=todos)

    @bp.post("/demos/todos/api")
    def todos_create():
        title = valid_title(request.get_json(silent=True) or {})
        if title is None:
            return bad(f"title must be 1 to {MAX_TITLE} characters")
        todo = Todo(title=title, completed=False)
        db.session.add(todo)
        db.session.commit()
        return jsonify(todo.as_dict()), 201

    @bp.patch("/demos/todos/api/<int:todo_id>")
    def todos_update(todo_id):
        data = request.get_json(silent=True) or {}
        todo = db.get_or_404(Todo, todo_id)
        if "title" in data:
            title = valid_title(data)
            if title is None:
                return bad(f"title must be 1 to {MAX_TITLE} characters")
            todo.title = title
        if "completed" in data:
            if not isinstance(data["completed"], bool):
                return bad("completed must be true or false")
            todo.completed = data["completed"]
        db.session.commit()
        return jsonify(todo.as_dict())

    @bp.delete("/demos/todos/api/<int:todo_id>")
    def todos_delete(todo_id):
        todo = db.get_or_404(Todo, todo_id)
        db.session.delete(todo)
        db.session.commit()
        return "", 204

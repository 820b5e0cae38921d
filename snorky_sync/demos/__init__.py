"""The demos served by the default app (``python -m snorky_sync serve``).

``/`` lists them: PubSub (the seed's example), Chat with presence, shared
Cursors, and a TodoMVC-style list kept in sync by DataSync over a real
database (Flask-SQLAlchemy).  Each page uses ``/static/snorky.js``.

Chat and Cursors need identities: a demo page asks for a name and gets a
connection token for it from ``/demos/token`` — anyone may pick any name,
which is why the demos are off unless ``SNORKY_DEMOS=1`` (the ``serve``
command turns them on; ``--no-demos`` turns them off).
"""
from __future__ import annotations

import logging
from importlib import resources

from flask import Blueprint, Response, abort, jsonify, request

__all__ = ["init_demos", "PAGES"]

log = logging.getLogger("snorky_sync.demos")

PAGES = {
    "pubsub": "PubSub: a channel every tab publishes to",
    "chat": "Chat with presence: who is here, messages, read receipts",
    "cursors": "Cursors: everybody's pointer on a shared board",
    "todos": "Todos: a list kept in sync by DataSync, stored with Flask-SQLAlchemy",
}

MAX_NAME = 40


def _page(name: str) -> Response:
    html = resources.files("snorky_sync").joinpath(f"static/demos/{name}.html").read_bytes()
    return Response(html, mimetype="text/html")


def init_demos(app, tokens, backend, datasync, database_url: str) -> None:
    """Mount the demo pages on ``app``.

    ``tokens``: the ConnectionTokens that ``/ws`` accepts; ``backend``: a
    SnorkyBackend for DataSync authorizations and deltas; ``datasync``: the
    DataSyncService (the todo dealer is registered on it).
    """
    bp = Blueprint("snorky_demos", __name__)

    @bp.get("/")
    def index():
        return _page("index")

    @bp.get("/demos/<name>")
    def demo(name):
        if name not in PAGES:
            abort(404)
        return _page(name)

    @bp.get("/demos/token")
    def token():
        name = (request.args.get("name") or "").strip()
        if not name or len(name) > MAX_NAME:
            return jsonify(error=f"name must be 1 to {MAX_NAME} characters"), 400
        return jsonify(token=tokens.create(name), identity=name)

    from .todos import init_todos

    init_todos(app, bp, backend, datasync, database_url)
    app.register_blueprint(bp)
    log.warning("demos are on at / (anyone can pick any chat identity there); "
                "SNORKY_DEMOS=0 turns them off")

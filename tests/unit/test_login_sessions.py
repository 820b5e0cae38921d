"""The login-session mark (snorky_sync/login_sessions.py) put into a Flask
session by the app's after-request hook: on a login, not on requests that
leave the session alone, and on a Flask whose request context keeps the
session under another attribute name (the public proxy then)."""
from __future__ import annotations

import flask
from flask.ctx import RequestContext

from snorky_sync import Snorky
from snorky_sync.auth import session_identity
from snorky_sync.login_sessions import LOGIN_SESSION_FIELD
from snorky_sync.registry import ServiceRegistry


class ElsewhereContext(RequestContext):
    """A request context keeping its session where the hook does not look."""

    @property
    def _session(self):
        return self.__dict__.get("_kept")

    @_session.setter
    def _session(self, value):
        self.__dict__["_kept"] = value


class ElsewhereFlask(flask.Flask):
    def request_context(self, environ):
        return ElsewhereContext(self, environ)


def make_app(cls=flask.Flask) -> flask.Flask:
    app = cls(__name__)
    app.secret_key = "login-sessions-test-secret"
    Snorky(app).websocket("/ws", ServiceRegistry([]), authenticate=session_identity("user_id"))

    @app.post("/login/<name>")
    def login(name):
        flask.session["user_id"] = name
        return "in"

    @app.get("/plain")
    def plain():
        return "plain"

    @app.get("/mark")
    def mark():
        return {"mark": flask.session.get(LOGIN_SESSION_FIELD)}
    return app


def check_marks(app: flask.Flask) -> None:
    http = app.test_client()
    assert http.get("/mark").json == {"mark": None}           # not logged in: no mark
    http.post("/login/ann")
    first = http.get("/mark").json["mark"]
    assert isinstance(first, str) and len(first) >= 16          # the login's response carried it
    assert http.get("/mark").json["mark"] == first               # kept
    other = app.test_client()
    other.post("/login/ann")
    assert other.get("/mark").json["mark"] not in (None, first)  # another browser, another login session


def test_a_login_gets_a_mark_and_a_request_that_leaves_the_session_alone_is_untouched():
    app = make_app()
    check_marks(app)
    plain = app.test_client().get("/plain")
    assert "Cookie" not in plain.headers.get("Vary", "") and "Set-Cookie" not in plain.headers


def test_a_flask_keeping_the_session_elsewhere_still_gets_the_mark():
    check_marks(make_app(ElsewhereFlask))

"""snorky_sync.integrations.flask_views.subscription_in_response with a backend
whose authorize_subscription is an override: with 0.2.0's signature
``(items, service=...)`` it is called without ``requester`` (no TypeError);
with the current one it gets the requester."""
from flask import Flask, jsonify

from snorky_sync.backend import SnorkyBackend
from snorky_sync.integrations.flask_views import subscription_in_response

ITEMS = [{"dealer": "allTodos", "query": None}]


class Answering:
    """A transport answering every call with a token; keeps the params sent."""

    def __init__(self) -> None:
        self.params: list[dict] = []

    def send(self, message, json=None):
        self.params.append(message["message"]["params"])
        return {"service": message["service"], "message": {"type": "response", "data": "tok"}}


class Backend020(SnorkyBackend):
    """An override written against snorky_sync 0.2.0 (no requester then)."""

    def __init__(self, transport) -> None:
        super().__init__(transport)
        self.seen: list = []

    def authorize_subscription(self, items, service="datasync_backend"):
        self.seen.append((items, service))
        return super().authorize_subscription(items, service)


def app_for(backend) -> Flask:
    app = Flask(__name__)

    @app.get("/api/todos")
    @subscription_in_response(backend, ITEMS, requester=lambda: "user:7")
    def todos():
        return jsonify(["milk"])

    return app


def test_an_override_without_requester_is_called_without_it():
    transport = Answering()
    backend = Backend020(transport)
    r = app_for(backend).test_client().get("/api/todos", headers={"X-Snorky": "Subscribe"})
    assert r.status_code == 200, r.data
    assert r.headers["X-Subscription-Token"] == "tok"
    assert backend.seen == [(ITEMS, "datasync_backend")]
    assert transport.params == [{"items": ITEMS}]


def test_the_current_signature_gets_the_requester():
    transport = Answering()
    r = app_for(SnorkyBackend(transport)).test_client().get("/api/todos", headers={"X-Snorky": "Subscribe"})
    assert r.status_code == 200 and r.headers["X-Subscription-Token"] == "tok"
    assert transport.params == [{"items": ITEMS, "requester": "user:7"}]

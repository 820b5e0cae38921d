"""A Flask app that identifies its users by their Flask session (cookie), on
``/ws`` and ``/sockjs``, as docs/security.md and docs/sockjs.md tell an app to.

The victim logs in at ``/login/<user>`` (the session cookie); ``who.whoami``
answers a connection's identity, ``pubsub`` carries messages.  Next to the
cookie endpoints: ``/sockjs-anon`` (no identity at all) and ``/sockjs-token``
(``?token=`` from ``/token/<user>``), for the attacks that concern every
SockJS endpoint; ``/ws-single`` and ``/sockjs-single`` take single-use
tokens (``/token-single/<user>``).  Settings come from ``SNORKY_*`` as in any app.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flask import Flask, session  # noqa: E402

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command  # noqa: E402
from snorky_sync.auth import ConnectionTokens, session_identity  # noqa: E402
from snorky_sync.services.pubsub import PubSubBackend, PubSubService  # noqa: E402


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req, **ignored):
        return req.client.identity


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

frontend = ServiceRegistry()
pubsub = PubSubService("pubsub")
frontend.register_service(pubsub)
frontend.register_service(WhoAmI("who"))
backend = ServiceRegistry()
backend.register_service(PubSubBackend("pubsub_backend", pubsub))

TOKENS = ConnectionTokens("security-token-secret-0123456789", max_age=600)
SINGLE = ConnectionTokens("security-single-secret-0123456789", max_age=600, single_use=True)
DELAY = float(os.environ.get("SOCKJS_DISCONNECT_DELAY", "5"))

app = Flask(__name__)
app.secret_key = "security-test-secret"
snorky = Snorky(app)
snorky.websocket("/ws", frontend, authenticate=session_identity("user_id"))
snorky.sockjs("/sockjs", frontend, authenticate=session_identity("user_id"), disconnect_delay=DELAY)
snorky.sockjs("/sockjs-anon", frontend, disconnect_delay=DELAY)
snorky.sockjs("/sockjs-token", frontend, authenticate=TOKENS, disconnect_delay=DELAY)
snorky.websocket("/ws-single", frontend, authenticate=SINGLE)
snorky.sockjs("/sockjs-single", frontend, authenticate=SINGLE, disconnect_delay=DELAY)
snorky.backend("/backend", backend, api_key=os.environ["SNORKY_API_KEY"])
snorky.metrics("/metrics", api_key=os.environ["SNORKY_API_KEY"])


@app.get("/login/<user>")
def login(user):
    session["user_id"] = user
    return "logged in"


@app.get("/token/<user>")
def token(user):
    return TOKENS.create(user)


@app.get("/token-single/<user>")
def token_single(user):
    return SINGLE.create(user)


@app.get("/healthz")
def healthz():
    return "ok"

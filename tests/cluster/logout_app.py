"""The server of tests/cluster/test_logout.py: a Flask app whose users log in
with its session cookie (``session_identity``) and whose logout view closes
that browser's connections on every worker (``snorky.logout()``)."""
import os

from flask import Flask, session

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
from snorky_sync.auth import session_identity
from snorky_sync.services.pubsub import PubSubService


class Worker(RPCService):  # test-only: which worker a connection reached, and as whom
    @rpc_command
    def pid(self, req):
        return os.getpid()

    @rpc_command
    def whoami(self, req):
        return req.client.identity


app = Flask(__name__)
app.secret_key = os.environ["TEST_SECRET"]
snorky = Snorky(app)
registry = ServiceRegistry([PubSubService("pubsub"), Worker("worker")])
user = session_identity("user_id", required=True)
snorky.websocket("/ws", registry, authenticate=user)
snorky.sockjs("/sockjs", registry, authenticate=user)
snorky.health("/healthz")


@app.post("/login/<name>")
def login(name):
    session["user_id"] = name
    return "logged in"


@app.post("/logout")
def logout():
    closed = snorky.logout()  # this browser's connections, on every worker
    session.clear()
    return {"closed": closed}

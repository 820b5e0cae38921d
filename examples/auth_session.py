"""Identify WebSocket connections by the Flask session of your app.

Your login puts the user id in the session; the WebSocket handshake carries
the session cookie, and ``session_identity`` makes it the connection's
identity (refusing anonymous visitors with 401 when ``required=True``).

    python examples/auth_session.py
    # visit /login/alice, then connect to ws://localhost:8002/ws
"""
import os

from flask import Flask, session

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command, serve
from snorky_sync.auth import session_identity


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req):
        return req.client.identity  # what authenticate() returned at the handshake


app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "dev-only-secret-change-me")


@app.get("/login/<user>")
def login(user):
    session["user_id"] = user  # stands for your real login view
    return f"logged in as {user}"


registry = ServiceRegistry()
registry.register_service(WhoAmI("who"))
Snorky(app).websocket("/ws", registry, authenticate=session_identity("user_id", required=True))

if __name__ == "__main__":
    serve(app, port=int(os.environ.get("PORT", 8002)))

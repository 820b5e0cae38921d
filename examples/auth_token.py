"""Identify WebSocket connections by a signed, expiring token in the URL.

The web application (which knows the user) creates a token with the shared
secret and gives it to the page; the page connects to
``ws://host/ws?token=...``.  Works across hosts and ports, no cookies needed.

    SNORKY_TOKEN_SECRET=a-long-shared-secret-123 python examples/auth_token.py
"""
import os

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command, serve
from snorky_sync.auth import ConnectionTokens

tokens = ConnectionTokens(os.environ["SNORKY_TOKEN_SECRET"], max_age=600, required=True)


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req):
        return req.client.identity


app = Flask(__name__)


@app.get("/token/<user>")
def token(user):
    # In your web app: after login, hand the page a token for its user.
    # (From another process: SnorkyBackend(..., token_secret=...).create_connection_token(user))
    return tokens.create(user)


registry = ServiceRegistry()
registry.register_service(WhoAmI("who"))
Snorky(app).websocket("/ws", registry, authenticate=tokens)

if __name__ == "__main__":
    serve(app, port=int(os.environ.get("PORT", 8002)))

"""The server of tests/js/token_refresh.test.mjs: JWT connection tokens that
end connections when they expire (4001), hence the in-band refresh
(docs/protocol.md section 6); ``/jwt/<user>?ttl=s`` makes a token, as the
page's own web application would.  Also the server of
tests/browser/test_token_lifetimes.py (``/sockjs``: the same over SockJS)."""
import time

import jwt
from flask import Flask, request

from snorky_sync import ServiceRegistry, Snorky
from snorky_sync.auth import JWTTokens
from snorky_sync.services.pubsub import PubSubService

SECRET = "js-refresh-test-secret-0123456789-abcdef"

app = Flask(__name__)
snorky = Snorky(app)
snorky.health("/healthz")
registry = ServiceRegistry([PubSubService("pubsub", history_size=100)])
expiring = JWTTokens(SECRET, algorithms=["HS256"], expire_connections=True)
snorky.websocket("/ws", registry, authenticate=expiring)
snorky.sockjs("/sockjs", registry, authenticate=expiring)  # tests/browser/test_token_lifetimes.py


@app.get("/jwt/<user>")
def make_token(user):
    ttl = float(request.args.get("ttl", "60"))
    return jwt.encode({"sub": user, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")

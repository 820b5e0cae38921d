"""The server of the token tests (tests/integration/test_jwt_tokens.py,
test_token_expiry.py, test_token_refresh.py; helpers in tests/support/tokens.py):
one app for the three, started under each serving mode.

Every endpoint serves the same registry (``who.whoami`` answers the
connection's identity; ``pubsub`` keeps 50 messages of history):

* ``/ws``, ``/sockjs``: HS256 JWTs that end the connection at their ``exp``
  (4001) unless refreshed in band (the ``token`` service);
* ``/ws-keep``: the same tokens, connections not ended (Snorky 0.1's default);
* ``/ws-tok``: itsdangerous ConnectionTokens of 3 s, ending connections;
* ``/ws-hs``: HS256 with the identity in ``email``, audience and issuer checked;
* ``/ws-rs``, ``/ws-es``, ``/ws-jwks``: public keys from ``TEST_RS_PEM`` /
  ``TEST_ES_PEM`` and a JWKS at ``TEST_JWKS_URL`` (when those are set).

The secret is ``TEST_SECRET`` (tests/support/tokens.py's SECRET).
"""
import os

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
from snorky_sync.auth import ConnectionTokens, JWTTokens
from snorky_sync.services.pubsub import PubSubService


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req):
        return req.client.identity


SECRET = os.environ["TEST_SECRET"]
app = Flask(__name__)
snorky = Snorky(app)
registry = ServiceRegistry([WhoAmI("who"), PubSubService("pubsub", history_size=50)])
snorky.health("/healthz")

expiring = JWTTokens(SECRET, algorithms=["HS256"], expire_connections=True)
snorky.websocket("/ws", registry, authenticate=expiring)
snorky.sockjs("/sockjs", registry, authenticate=expiring, heartbeat=60)
snorky.websocket("/ws-keep", registry, authenticate=JWTTokens(SECRET, algorithms=["HS256"]))
snorky.websocket("/ws-tok", registry, authenticate=ConnectionTokens(
    SECRET, max_age=3, expire_connections=True))
snorky.websocket("/ws-hs", registry, authenticate=JWTTokens(
    SECRET, algorithms=["HS256"], identity_claim="email",
    audience="snorky", issuer="https://sso.example"))
if "TEST_RS_PEM" in os.environ:
    snorky.websocket("/ws-rs", registry, authenticate=JWTTokens(
        os.environ["TEST_RS_PEM"], algorithms=["RS256"], required=True))
    snorky.websocket("/ws-es", registry, authenticate=JWTTokens(
        os.environ["TEST_ES_PEM"], algorithms=["ES256"]))
if "TEST_JWKS_URL" in os.environ:
    snorky.websocket("/ws-jwks", registry, authenticate=JWTTokens(
        jwks_url=os.environ["TEST_JWKS_URL"], algorithms=["RS256", "ES256"],
        jwks_refetch_interval=0))

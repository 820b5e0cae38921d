"""The application the integration tests serve under every server kind.

The default app's services plus the calculator example, an echo service and
an ``inspect`` service that reports internal state (to check cleanup).
"""
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from calculator import CalculatorService  # noqa: E402
from echo_service import EchoService  # noqa: E402
from flask import Flask  # noqa: E402

from flask import session  # noqa: E402

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command  # noqa: E402
from snorky_sync.auth import ConnectionTokens, session_identity  # noqa: E402
from snorky_sync.brokers import make_broker  # noqa: E402
from snorky_sync.services.chat import ChatService  # noqa: E402
from snorky_sync.services.cursors import CursorsService  # noqa: E402
from snorky_sync.services.messaging import MessagingService  # noqa: E402
from snorky_sync.services.datasync import DataSyncBackend, DataSyncService  # noqa: E402
from tests.support.dealers import AllTodos, TodosByList, TodosFilter  # noqa: E402
from snorky_sync.endpoints.reader import awake_readers  # noqa: E402
from snorky_sync.metrics import snapshot  # noqa: E402
from snorky_sync.services.pubsub import PubSubBackend, PubSubService  # noqa: E402


class InspectService(RPCService):
    """Test-only window into server state."""

    def __init__(self, name, pubsub):
        super().__init__(name)
        self.pubsub = pubsub

    @rpc_command
    def state(self, req):
        return {"pid": os.getpid(),
                "subscribers": len(self.pubsub.subscribers),
                "subscriptions": len(self.pubsub.subscriptions),
                "counters": snapshot(),
                "reading": awake_readers()}


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

broker = make_broker(os.environ.get("SNORKY_REDIS_URL"))
broker.start()
frontend = ServiceRegistry(broker=broker)
pubsub = PubSubService("pubsub", history_size=int(os.environ.get("SNORKY_PUBSUB_HISTORY_SIZE", "0")))
frontend.register_service(pubsub)
frontend.register_service(CalculatorService("calc"))
frontend.register_service(EchoService("echo"))
frontend.register_service(InspectService("inspect", pubsub))


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req, **ignored):
        return req.client.identity


frontend.register_service(WhoAmI("who"))

frontend.register_service(ChatService("chat", history_size=int(os.environ.get("SNORKY_CHAT_HISTORY_SIZE", "0"))))
frontend.register_service(CursorsService("cursors"))
frontend.register_service(MessagingService("messaging"))
datasync = DataSyncService("datasync", [TodosByList, AllTodos, TodosFilter],
                           resume_window=float(os.environ.get("SNORKY_DATASYNC_RESUME_WINDOW", "0")))
frontend.register_service(datasync)

backend = ServiceRegistry(broker=broker)
backend.register_service(PubSubBackend("pubsub_backend", pubsub))
backend.register_service(DataSyncBackend("datasync_backend", datasync))
backend.register_service(CalculatorService("calc"))

app = Flask(__name__)
app.secret_key = "integration-test-secret"
TOKENS = ConnectionTokens("integration-token-secret-0123456789", max_age=60)
snorky = Snorky(app)
snorky.websocket("/ws", frontend)
snorky.websocket("/ws-token", frontend, authenticate=TOKENS)
snorky.websocket("/ws-token-required", frontend,
                 authenticate=ConnectionTokens("integration-token-secret-0123456789", required=True))
snorky.websocket("/ws-session", frontend, authenticate=session_identity("user_id", required=True))
# behind a reverse proxy that rewrites Host: the public origin is configured
snorky.websocket("/ws-session-proxied", frontend, authenticate=session_identity("user_id"),
                 public_origin="https://app.example")
# the operator's allowlist wins over the same-origin rule
snorky.websocket("/ws-session-allowed", frontend, authenticate=session_identity("user_id"),
                 allowed_origins=["http://partner.example"])
snorky.sockjs("/sockjs", frontend)
snorky.sockjs("/sockjs-token", frontend, authenticate=TOKENS,
              disconnect_delay=float(os.environ.get("SOCKJS_DISCONNECT_DELAY", "5")))


@app.get("/login/<user>")
def login(user):
    session["user_id"] = user
    return "logged in"


@app.get("/token/<user>")
def token(user):
    return TOKENS.create({"user": user})
snorky.backend("/backend", backend, api_key=os.environ["SNORKY_API_KEY"],
               max_body_size=64 * 1024)


@app.get("/healthz")
def healthz():
    return "ok"


@app.get("/broker")
def broker_state():
    return broker.health()

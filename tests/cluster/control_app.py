"""The server of the cluster tests that drive pages from the backend
(tests/cluster/conftest.py's ``control_cluster``): control.disconnect,
control.subscribe with PubSub and Chat, presence, recent and excludeSender.

A user's app, served by gunicorn from this module (``TEST_SECRET`` signs the
connection tokens): PubSub and Chat with personal channels and presence (both
asked for per subscribe / join, so a test that does not ask sees none), PubSub
history, a test-only ``worker`` service naming the process a connection
reached, and in the backend ``control`` and ``pubsub_backend``.
"""
import os

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
from snorky_sync.auth import ConnectionTokens
from snorky_sync.services.chat import ChatService
from snorky_sync.services.control import ControlService
from snorky_sync.services.pubsub import PubSubBackend, PubSubService


class Worker(RPCService):  # test-only: which worker a connection reached
    @rpc_command
    def pid(self, req):
        return os.getpid()


app = Flask(__name__)
snorky = Snorky(app)
pubsub = PubSubService("pubsub", personal_channels=True, presence=True, history_size=1000)
chat = ChatService("chat", personal_channels=True, presence=True)
snorky.websocket("/ws", ServiceRegistry([pubsub, chat, Worker("worker")]),
                 authenticate=ConnectionTokens(os.environ["TEST_SECRET"]))
snorky.backend("/backend", ServiceRegistry([ControlService("control"), PubSubBackend("pubsub_backend", pubsub)]),
               api_key=os.environ["SNORKY_API_KEY"])
snorky.health("/healthz")

"""The server of tests/cluster/test_interest_routing.py (and bench/routing.py's
services): every service that crosses Redis, to check that a process with no
client in a channel, document or group takes nothing of its traffic off Redis.

A user's app served by gunicorn from this module (``TEST_SECRET`` signs the
connection tokens): PubSub with presence (``pubsub``), PubSub without presence
(``marks``: the tests' markers), PubSub with history (``hist``), Chat with
presence, Cursors, Messaging, a user-written service broadcasting to groups
(``rooms``: ``Service.join_group`` / ``broadcast_group``), DataSync (the
``allTodos`` and ``allTasks`` dealers: models ``Todo`` and ``Task``, whose
topics are on shards 2 and 1 of three), the test-only ``worker`` service naming the process,
and ``control`` and ``datasync_backend`` in the backend.
"""
import os

from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command
from snorky_sync.auth import ConnectionTokens
from snorky_sync.services.chat import ChatService
from snorky_sync.services.control import ControlService
from snorky_sync.services.cursors import CursorsService
from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
from snorky_sync.services.datasync.dealers import BroadcastDealer
from snorky_sync.services.messaging import MessagingService
from snorky_sync.services.pubsub import PubSubService
from tests.support.dealers import AllTodos


class AllTasks(BroadcastDealer):
    name = "allTasks"
    model = "Task"


class Worker(RPCService):  # test-only: which worker a connection reached
    @rpc_command
    def pid(self, req):
        return os.getpid()


class Rooms(RPCService):  # a user's service on groups
    @rpc_command
    def enter(self, req, room):
        self.join_group(req.client, room)

    @rpc_command
    def exit(self, req, room):
        self.leave_group(req.client, room)

    @rpc_command
    def say(self, req, room, text):
        return self.broadcast_group(room, {"type": "said", "room": room, "text": text})


app = Flask(__name__)
snorky = Snorky(app)
datasync = DataSyncService("datasync", [AllTodos, AllTasks])
snorky.websocket("/ws", ServiceRegistry([
    PubSubService("pubsub", presence=True), PubSubService("marks"), PubSubService("hist", history_size=1000),
    ChatService("chat", presence=True), CursorsService("cursors"), MessagingService("messaging"),
    Rooms("rooms"), datasync, Worker("worker")]), authenticate=ConnectionTokens(os.environ["TEST_SECRET"]))
snorky.backend("/backend", ServiceRegistry([ControlService("control"), DataSyncBackend("datasync_backend", datasync)]),
               api_key=os.environ["SNORKY_API_KEY"])
snorky.metrics("/metrics", api_key=os.environ["SNORKY_API_KEY"])
snorky.health("/healthz")

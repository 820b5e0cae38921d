"""The server the JavaScript snippets of docs/javascript.md run against: what that
page assumes a reader has — snorky.js at /static/snorky.js, /ws with an identity
(here every connection is "alice"), and a view at /api/todos answering
``{token, todos}`` (the DataSync flow), and the poll service of the
notificationReceived section.  ``python tests/docs/js_snippets_server.py``
listens on $PORT."""
import os
import sys
from pathlib import Path

from flask import Flask, jsonify

from snorky_sync import RPCError, RPCService, ServiceRegistry, Snorky, rpc_command, serve
from snorky_sync.backend import LocalTransport, SnorkyBackend
from snorky_sync.services.chat import ChatService
from snorky_sync.services.cursors import CursorsService
from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
from snorky_sync.services.messaging import MessagingService
from snorky_sync.services.pubsub import PubSubBackend, PubSubService

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.dealers import AllTodos  # noqa: E402  (the tests' shared dealers)


class PollService(RPCService):
    """The wire of docs/writing-a-service.md's poll (``watch`` answers the
    totals, each vote is pushed to every watcher), in one process."""
    options = ("pizza", "sushi", "salad")

    def __init__(self, name):
        super().__init__(name)
        self.votes = {}
        self.watchers = set()

    @rpc_command
    def watch(self, req, poll):
        if poll != "lunch":
            raise RPCError("Unknown poll")
        self.watchers.add(req.client)
        return self.votes

    @rpc_command
    def vote(self, req, poll, option):
        if poll != "lunch" or option not in self.options:
            raise RPCError("Unknown option")
        self.votes[option] = self.votes.get(option, 0) + 1
        self.broadcast(self.watchers, {"type": "votes", "poll": poll, "option": option,
                                       "votes": self.votes[option]})
        return self.votes[option]

    def client_disconnected(self, client):
        with self.lock:
            self.watchers.discard(client)


datasync = DataSyncService("datasync", [AllTodos])
pubsub = PubSubService("pubsub", history_size=100)  # the page subscribes with recent (javascript.md)
frontend = ServiceRegistry([pubsub, ChatService("chat"), CursorsService("cursors"),
                            MessagingService("messaging"), datasync, PollService("poll")])
backend_registry = ServiceRegistry([DataSyncBackend("datasync_backend", datasync),
                                    PubSubBackend("pubsub_backend", pubsub)])
backend = SnorkyBackend(LocalTransport(backend_registry))

static = os.path.join(os.path.dirname(__import__("snorky_sync").__file__), "static")
app = Flask(__name__, static_folder=static, static_url_path="/static")
snorky = Snorky(app)
snorky.websocket("/ws", frontend, authenticate=lambda request: request.args.get("as", "alice"))
snorky.backend("/backend", backend_registry, api_key=os.environ["SNORKY_API_KEY"])


@app.get("/api/todos")
def todos():
    token = backend.authorize_subscription([{"dealer": "allTodos", "query": None}])
    return jsonify(token=token, todos=[{"id": 1, "title": "existing"}])


if __name__ == "__main__":
    serve(app, "127.0.0.1", int(os.environ["PORT"]))

"""The server side of Snorky 0.1's JavaScript doc example (doc/examples/simple_pubsub.js).

0.1's guide pairs that connector with a minimal PubSub service whose
notifications have ``type: "publication"``; this is that service written for
snorky_sync, served at ``/ws`` with ``/healthz`` for the test helper.
"""
from flask import Flask

from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command


class MinimalPubSubService(RPCService):
    """subscribe / unsubscribe (no parameters) and publish(message) to every subscriber."""

    def __init__(self, name):
        super().__init__(name)
        self.clients = set()

    @rpc_command
    def subscribe(self, req):
        self.clients.add(req.client)

    @rpc_command
    def unsubscribe(self, req):
        self.clients.discard(req.client)

    def client_disconnected(self, client):
        with self.lock:
            self.clients.discard(client)

    @rpc_command
    def publish(self, req, message):
        self.broadcast(list(self.clients), {"type": "publication", "message": message})


registry = ServiceRegistry()
registry.register_service(MinimalPubSubService("pubsub"))
app = Flask(__name__)
Snorky(app).websocket("/ws", registry)


@app.get("/healthz")
def healthz():
    return "ok"

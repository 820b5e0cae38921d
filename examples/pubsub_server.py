"""The seed's example: a PubSub service on ws://localhost:8002/ws.

    python examples/pubsub_server.py
"""
import os

from flask import Flask

from snorky_sync import ServiceRegistry, Snorky, serve
from snorky_sync.services.pubsub import PubSubService

registry = ServiceRegistry()
registry.register_service(PubSubService("messaging"))

app = Flask(__name__)
snorky = Snorky(app)
snorky.websocket("/ws", registry)

if __name__ == "__main__":
    print("Snorky running...", flush=True)
    serve(app, port=int(os.environ.get("PORT", 8002)))

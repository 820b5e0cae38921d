"""Snorky 0.1's demos/pubsub_backend/server.py: the import prefix changed and the
Tornado wiring (WebSocket route, backend handler, static files) replaced by one
Flask app.  The backend key comes from SNORKY_API_KEY (16 characters at least
in snorky_sync; 0.1's demo used "swordfish")::

    SNORKY_API_KEY=swordfish-swordfish PORT=5800 python examples/snorky01/pubsub_backend_demo/server.py
"""
import os

from flask import Flask
from snorky_sync import ServiceRegistry, Snorky, serve

from snorky_sync.services.pubsub import PubSubService, PubSubBackend

class PrivatePubSub(PubSubService):
    def can_publish(self, client, channel):
        # Publishing is only allowed from the backend
        return False

if __name__ == "__main__":
    frontend_registry = ServiceRegistry()
    backend_registry = ServiceRegistry()

    pubsub = PrivatePubSub("pubsub")
    frontend_registry.register_service(pubsub)

    pubsub_backend = PubSubBackend("pubsub_backend", pubsub)
    backend_registry.register_service(pubsub_backend)

    dirname = os.path.dirname(os.path.abspath(__file__))
    application = Flask(__name__, static_folder=dirname, static_url_path="")
    snorky = Snorky(application)
    snorky.websocket("/ws", frontend_registry)
    snorky.backend("/backend", backend_registry, api_key=os.environ["SNORKY_API_KEY"])
    application.add_url_rule("/", "index", lambda: application.send_static_file("index.html"))

    print("Snorky running...")
    serve(application, "127.0.0.1", int(os.environ.get("PORT", 5800)))

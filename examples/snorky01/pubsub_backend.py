"""Snorky 0.1's doc/examples/pubsub_backend.py: the import prefix changed and the
Tornado wiring replaced by Flask wiring (two apps on two ports, as in 0.1).

The backend key must be at least 16 characters in snorky_sync (0.1's
example used "swordfish"); it comes from SNORKY_API_KEY here::

    SNORKY_API_KEY=swordfish-swordfish python examples/snorky01/pubsub_backend.py
"""
import os

from flask import Flask
from snorky_sync import ServiceRegistry, Snorky, serve
from snorky_sync.embedded import make_server

from snorky_sync.services.pubsub import PubSubService, PubSubBackend

class PrivatePubSub(PubSubService):
    def can_publish(self, client, channel):
        # Publishing is only allowed from the backend
        return False

if __name__ == "__main__":
    # Create separate service registries, providing separate interfaces to
    # services
    frontend_registry = ServiceRegistry()
    backend_registry = ServiceRegistry()

    # Create a PubSub service and register it in the frontend registry
    pubsub = PrivatePubSub("pubsub")
    frontend_registry.register_service(pubsub)

    # Create a PubSub backend service and register it in the backend registry
    pubsub_backend = PubSubBackend("pubsub_backend", pubsub)
    backend_registry.register_service(pubsub_backend)

    # Make frontend_registry attend requests from WebSocket through port 5800
    frontend_application = Flask("frontend")
    Snorky(frontend_application).websocket("/ws", frontend_registry)

    # Make backend_registry attend requests from HTTP through port 5801
    backend_application = Flask("backend")
    Snorky(backend_application).backend("/backend", backend_registry,
                                        api_key=os.environ["SNORKY_API_KEY"])
    make_server(backend_application, "127.0.0.1",
                int(os.environ.get("BACKEND_PORT", 5801))).start()

    print("Snorky running...")
    serve(frontend_application, "127.0.0.1", int(os.environ.get("PORT", 5800)))

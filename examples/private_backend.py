"""PubSub that only the trusted backend may publish to.

Browsers subscribe on the public WebSocket; they cannot publish
(``can_publish`` says no).  Your web application publishes through the
private HTTP endpoint with the API key (see backend_publisher.py).  In
production, put the backend on a separate port that the firewall keeps
private: ``BACKEND_PORT`` starts a second server for it.

    SNORKY_API_KEY=some-long-secret-key-123 python examples/private_backend.py
"""
import os

from flask import Flask

from snorky_sync import ServiceRegistry, Snorky, serve
from snorky_sync.embedded import make_server
from snorky_sync.services.pubsub import PubSubBackend, PubSubService


class ReadOnlyPubSub(PubSubService):
    def can_publish(self, client, channel):
        return False  # only the backend publishes


frontend = ServiceRegistry()
pubsub = ReadOnlyPubSub("news")
frontend.register_service(pubsub)

backend = ServiceRegistry()
backend.register_service(PubSubBackend("news_backend", pubsub))

public_app = Flask(__name__)
Snorky(public_app).websocket("/ws", frontend)

private_app = Flask(__name__ + ".private")
Snorky(private_app).backend("/backend", backend, api_key=os.environ["SNORKY_API_KEY"])

if __name__ == "__main__":
    port = int(os.environ.get("PORT", 8002))
    backend_port = int(os.environ.get("BACKEND_PORT", port + 1))
    make_server(private_app, "127.0.0.1", backend_port).start()
    print(f"Public WebSocket on :{port}, private backend on 127.0.0.1:{backend_port}", flush=True)
    serve(public_app, port=port)

"""The smallest custom service: every message comes straight back.

    python examples/echo_service.py
    # send {"service": "echo", "message": "anything"} to ws://localhost:8002/ws
"""
import os

from flask import Flask

from snorky_sync import Service, ServiceRegistry, Snorky, serve


class EchoService(Service):
    """Sends every message back to the client that sent it."""

    def process_message_from(self, client, msg):
        self.send_message_to(client, msg)


registry = ServiceRegistry()
registry.register_service(EchoService("echo"))
app = Flask(__name__)
Snorky(app).websocket("/ws", registry)

if __name__ == "__main__":
    print("Echo service running...", flush=True)
    serve(app, port=int(os.environ.get("PORT", 8002)))

"""The services of Snorky 0.1's documentation examples, served by snorky_sync.

The service modules next to this file are 0.1's ``doc/examples`` with the
import prefix changed; this file is the wiring (Flask instead of Tornado),
written with 0.1's ``ServiceRegistry(services)`` form::

    PORT=5800 python examples/snorky01/doc_server.py
"""
import os

from flask import Flask

from snorky_sync import ServiceRegistry, Snorky, serve

from echo_service import EchoService
from simple_pubsub import MinimalPubSubService
from simple_rpc import CalculatorService
from incomplete_datasync import datasync, datasync_backend

frontend_registry = ServiceRegistry([
    EchoService("echo"),
    CalculatorService("calc"),
    MinimalPubSubService("pubsub"),
    datasync,
])
backend_registry = ServiceRegistry([datasync_backend])

app = Flask(__name__)
snorky = Snorky(app)
snorky.websocket("/ws", frontend_registry)
snorky.backend("/backend", backend_registry, api_key=os.environ["SNORKY_API_KEY"])

if __name__ == "__main__":
    print("Snorky running...")
    serve(app, "127.0.0.1", int(os.environ.get("PORT", 5800)))

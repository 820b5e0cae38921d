"""create_app(): the default snorky_sync server, wired from settings.

Frontend registry at ``/ws``: ``pubsub``.  Backend registry at ``/backend``
(only when ``SNORKY_API_KEY`` is set): ``pubsub_backend``.  A demo page at
``/`` and ``/healthz`` for load balancers.
"""
from __future__ import annotations

import logging
from importlib import resources

from flask import Flask, Response, jsonify

from .auth import ConnectionTokens
from .brokers import make_broker
from .flask_ext import Snorky
from .endpoints.websocket import live_clients
from .registry import ServiceRegistry
from .services.pubsub import PubSubBackend, PubSubService
from .settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("snorky_sync")


def create_app(settings: Settings | None = None) -> Flask:
    """The default application: every built-in service, demo pages, health check."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask("snorky_sync")

    broker = make_broker(settings.redis_url)
    frontend = ServiceRegistry(broker)
    pubsub = PubSubService("pubsub")
    frontend.register_service(pubsub)

    backend = ServiceRegistry(broker)
    backend.register_service(PubSubBackend("pubsub_backend", pubsub))

    snorky = Snorky(app, settings)
    authenticate = None
    if settings.token_secret:
        authenticate = ConnectionTokens(settings.token_secret, max_age=settings.token_max_age)
    snorky.websocket("/ws", frontend, authenticate=authenticate)
    if settings.api_key:
        snorky.backend("/backend", backend, api_key=settings.api_key)
        snorky.metrics("/metrics", api_key=settings.api_key)
    else:
        log.warning("SNORKY_API_KEY is not set: the backend endpoint /backend and /metrics are off")
    app.extensions["snorky_sync.registries"] = {"frontend": frontend, "backend": backend}
    app.extensions["snorky_sync.broker"] = broker
    broker.start()

    demo = resources.files("snorky_sync").joinpath("static/demo_pubsub.html").read_bytes()

    @app.get("/")
    def index():
        return Response(demo, mimetype="text/html")

    @app.get("/healthz")
    def healthz():
        health = broker.health()
        status = "degraded" if health["state"] == "disconnected" else "ok"
        return jsonify(status=status, connections=len(live_clients()), broker=health)

    return app

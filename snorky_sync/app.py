"""create_app(): the default snorky_sync server, wired from settings.

Frontend registry at ``/ws`` (and over SockJS at ``/sockjs``): ``pubsub``, ``chat``, ``cursors``,
``messaging``, ``datasync``.  Backend registry at
``/backend`` (only when ``SNORKY_API_KEY`` is set): ``control`` (disconnect an
identity on every worker, ``info``, ``presence``), ``pubsub_backend``, ``datasync_backend``.  PubSub and Chat have personal channels
(``dialog#alice,bob``, unless ``SNORKY_PERSONAL_CHANNELS=0``).  DataSync dealers come from ``SNORKY_DATASYNC_DEALERS``.
The demos at ``/`` when ``SNORKY_DEMOS`` is on (see :mod:`snorky_sync.demos`),
``/static/snorky.js``, and ``/healthz`` for load balancers.
"""
from __future__ import annotations

import importlib
import logging
import os
import secrets
import tempfile

from flask import Flask, Response

from .auth import ConnectionTokens
from .backend import LocalTransport, SnorkyBackend
from .brokers import make_broker
from .extras import install_command
from .flask_ext import Snorky
from .logs import configure_logging
from .registry import ServiceRegistry
from .services.chat import ChatService
from .services.control import ControlService
from .services.cursors import CursorsService
from .services.datasync import DataSyncBackend, DataSyncService, Dealer
from .services.messaging import MessagingService
from .services.namespaces import Namespaces
from .services.pubsub import PubSubBackend, PubSubService
from .settings import Settings

__all__ = ["create_app", "BACKEND_ONLY_CHANNELS"]

log = logging.getLogger("snorky_sync")

BACKEND_ONLY_CHANNELS = ("news",)
"""PubSub channels of the default app that only the backend publishes to
(the docs' ``SnorkyBackend.publish("news", ...)``), unless
``SNORKY_BACKEND_ONLY_CHANNELS`` names others."""


def load_dealers(spec: str | None) -> list[type[Dealer] | Dealer]:
    """Dealers named by ``SNORKY_DATASYNC_DEALERS``: comma-separated ``module:attr``.

    Each attribute is a dealer class, a dealer instance, or a list of them
    (or a callable returning such a list).
    """
    dealers: list[type[Dealer] | Dealer] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        module_name, _, attr = item.partition(":")
        if not attr:
            raise ValueError(f"SNORKY_DATASYNC_DEALERS: {item!r} is not 'module:attribute'")
        obj = getattr(importlib.import_module(module_name), attr)
        if callable(obj) and not isinstance(obj, type):
            obj = obj()
        dealers.extend(obj if isinstance(obj, (list, tuple)) else [obj])
    return dealers


def create_app(settings: Settings | None = None) -> Flask:
    """The default application: every built-in service, demo pages, health check."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask("snorky_sync")

    broker = make_broker(settings.redis_url, settings.cluster_heartbeat, settings.cluster_expiry)
    frontend = ServiceRegistry(broker=broker)
    # only the backend publishes into these (SNORKY_BACKEND_ONLY_CHANNELS replaces the list)
    # `dialog#alice,bob` is alice's and bob's only (SNORKY_PERSONAL_CHANNELS=0 turns it off)
    personal = True if settings.personal_channels is None else settings.personal_channels
    # who may read and write which channel, by prefix (SNORKY_NAMESPACES, JSON; unset: all open)
    namespaces = None
    if settings.namespaces:
        try:
            namespaces = Namespaces.from_config(settings.namespaces)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"SNORKY_NAMESPACES: {exc}") from None
        recent = [n for n, ns in namespaces.namespaces.items() if ns.recent is not None]
        recent += ["*"] if namespaces.default.recent is not None else []
        if recent and not (settings.pubsub_history_size and settings.chat_history_size):
            raise ValueError(f"SNORKY_NAMESPACES: {', '.join(map(repr, recent))} set(s) recent, "
                             "which takes the last messages from the history of PubSub and Chat "
                             "(both take the namespaces): set SNORKY_PUBSUB_HISTORY_SIZE and "
                             "SNORKY_CHAT_HISTORY_SIZE too")
        sized = namespaces.history_sizes()
        if sized and not (settings.pubsub_history_size and settings.chat_history_size):
            names = ", ".join("'*'" if n is None else repr(n) for n in sized)
            raise ValueError(f"SNORKY_NAMESPACES: {names} set(s) history_size, which sizes the "
                             "history of PubSub and Chat (both take the namespaces): set "
                             "SNORKY_PUBSUB_HISTORY_SIZE and SNORKY_CHAT_HISTORY_SIZE too")
    pubsub = PubSubService("pubsub", history_size=settings.pubsub_history_size,
                           history_ttl=settings.pubsub_history_ttl,
                           backend_only=settings.backend_only_channels or BACKEND_ONLY_CHANNELS,
                           personal_channels=personal, presence=settings.pubsub_presence,
                           namespaces=namespaces)
    frontend.register_service(pubsub)

    chat = ChatService("chat", history_size=settings.chat_history_size,
                       history_ttl=settings.chat_history_ttl, personal_channels=personal,
                       presence=settings.chat_presence, namespaces=namespaces)
    cursors = CursorsService("cursors")
    frontend.register_service(chat)
    frontend.register_service(cursors)
    frontend.register_service(MessagingService("messaging"))
    datasync = DataSyncService("datasync", load_dealers(settings.datasync_dealers),
                               resume_window=settings.datasync_resume_window)
    frontend.register_service(datasync)
    # per-connection limits: from settings when Snorky mounts the registry, as in any app

    backend = ServiceRegistry(broker=broker)
    backend.register_service(ControlService("control"))  # disconnect(identity) on every worker
    backend.register_service(PubSubBackend("pubsub_backend", pubsub))
    backend.register_service(DataSyncBackend("datasync_backend", datasync,
                                             timeout_interval=settings.datasync_timeout))

    snorky = Snorky(app, settings)
    authenticate = None
    secret = settings.token_secret
    if settings.demos and not secret:
        secret = secrets.token_urlsafe(32)
        log.warning("demos: connection tokens are signed with a per-process secret; "
                    "with several workers set SNORKY_TOKEN_SECRET")
    if secret:
        authenticate = ConnectionTokens(secret, max_age=settings.token_max_age)
    snorky.websocket("/ws", frontend, authenticate=authenticate)
    snorky.sockjs("/sockjs", frontend, authenticate=authenticate)  # browsers without WebSocket
    if settings.api_key:
        only = settings.backend_port or None
        snorky.backend("/backend", backend, api_key=settings.api_key, only_port=only)
        snorky.metrics("/metrics", api_key=settings.api_key, only_port=only)
    else:
        log.warning("SNORKY_API_KEY is not set: the backend endpoint /backend and /metrics are off")
    app.extensions["snorky_sync.registries"] = {"frontend": frontend, "backend": backend}
    app.extensions["snorky_sync.broker"] = broker
    broker.start()  # now: the default app is served by the process that made it

    demos = settings.demos
    if demos:
        try:  # the Todos demo's extra: a plain install serves without the demos
            import flask_sqlalchemy  # noqa: F401
            import sqlalchemy  # noqa: F401
        except ImportError as exc:
            demos = False
            log.warning("demos skipped: %s; %s to serve them",
                        f"No module named {exc.name!r}" if exc.name else exc, install_command("demos"))
    if demos:
        from .demos import init_demos

        database_url = settings.demo_database_url or "sqlite:///" + os.path.join(
            tempfile.gettempdir(), "snorky_sync_demo_todos.db")
        init_demos(app, authenticate, SnorkyBackend(LocalTransport(backend)), datasync, database_url)
    else:
        @app.get("/")
        def index() -> Response:
            hint = (f"the demos need {install_command('demos')}" if settings.demos
                    else "SNORKY_DEMOS=1 shows the demos here")
            return Response("snorky_sync is running: WebSocket at /ws, client at /static/snorky.js "
                            f"({hint})\n", mimetype="text/plain")

    snorky.health("/healthz")  # as a mounted app's: status, connections, the broker
    return app

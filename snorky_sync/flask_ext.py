"""The Flask extension: mount WebSocket and backend endpoints into any app.

::

    snorky = Snorky(app)                      # or Snorky(); snorky.init_app(app)
    snorky.websocket("/ws", registry)
    snorky.sockjs("/sockjs", registry)        # the same services for browsers without WebSocket
    snorky.backend("/backend", backend_registry, api_key=key)
    snorky.health("/healthz")                 # for load balancers
    snorky.metrics("/metrics", api_key=key)   # for Prometheus

With ``SNORKY_REDIS_URL`` set (``app.config``, else the environment), every
registry mounted here that was made without a broker shares one Redis broker
(:attr:`Snorky.broker`): messages cross processes with no code of yours.  Every
broker of a mounted registry (that one, or a registry's own) is started when
the app serves its first request, and stopped when the process exits.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .client import configure as configure_budget
from .client import default_memory_budget
from .endpoints.admission import ConnectRate
from .endpoints.backend_http import make_backend_view
from .endpoints.http_limits import HTTPLimits, install_geventwebsocket, with_body_deadline
from .endpoints.metrics_http import make_metrics_view
from .endpoints.sockjs import SockJSOptions, make_sockjs_view
from .endpoints.websocket import WebSocketOptions, make_websocket_view
from .settings import MIN_API_KEY_LENGTH, Settings

if TYPE_CHECKING:
    from .brokers.base import Broker
    from .registry import ServiceRegistry

__all__ = ["Snorky"]

log = logging.getLogger("snorky_sync")

_UNSET: Any = object()


class Snorky:
    """Flask extension holding snorky_sync's endpoints for one app."""

    def __init__(self, app=None, settings: Settings | None = None) -> None:
        self.settings = s = settings or Settings.from_env()
        self._explicit_settings = settings is not None
        self.app: Any = None  # the Flask app, once attached
        #: the broker made from SNORKY_REDIS_URL for the registries mounted
        #: without one (None: no URL, or no such registry mounted yet)
        self.broker: Broker | None = None
        self._registries: list[ServiceRegistry] = []  # mounted, in order
        self._brokers: list[Broker] = []              # theirs, to start and stop
        self._serving = False                         # the app served a request here
        self._on_serve: list[Callable[[], None]] = []  # what starts then (the metrics export)
        self._ready_lock = threading.Lock()
        # one bucket for every endpoint of this extension (the process's rate)
        self.connect_rate = ConnectRate(s.connect_rate, s.connect_burst, s.connect_rate_per_ip,
                                        s.connect_burst_per_ip, s.trusted_proxies)
        configure_budget(memory_budget=s.max_outbound_memory or default_memory_budget(s.workers),
                         write_timeout=s.write_timeout)
        # the gevent-websocket worker's handler gets the embedded server's HTTP
        # deadlines now, as the app loads (before the worker serves)
        install_geventwebsocket(HTTPLimits.from_settings(s))
        self._routes: list[tuple[str, str, Callable, list[str], bool, dict]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app) -> None:
        """Attach to ``app`` (routes declared before are added now)."""
        from flask import Flask

        if not isinstance(app, Flask):
            raise TypeError(f"Snorky(app) / init_app(app): app is a Flask application, "
                            f"got {type(app).__name__}")
        self.app = app
        app.extensions["snorky_sync"] = self
        # request bodies have a deadline under every server (gunicorn reads them without one)
        app.wsgi_app = with_body_deadline(app.wsgi_app, self.settings.body_timeout)  # type: ignore[method-assign]
        app.wsgi_app = self._starting_brokers(app.wsgi_app)  # type: ignore[method-assign]
        if "snorky_sync_static" not in app.blueprints:
            # the JavaScript client for your pages: /snorky_sync/static/snorky.js
            from flask import Blueprint

            app.register_blueprint(Blueprint("snorky_sync_static", __name__, static_folder="static",
                                             static_url_path="/snorky_sync/static"))
        for route in self._routes:
            self._add(*route)
        for registry in self._registries:
            self._attach(registry)

    # -- brokers ---------------------------------------------------------------------
    def redis_url(self) -> str | None:
        """``SNORKY_REDIS_URL`` for this app: the ``settings`` given to the
        extension, else ``app.config``, else the environment."""
        if not self._explicit_settings and self.app is not None:
            url = self.app.config.get("SNORKY_REDIS_URL")
            if url:
                return str(url)
        return self.settings.redis_url

    def _mounted(self, registry) -> None:
        """A registry is served here: give it the app's broker when it has none."""
        if not isinstance(registry, _registry_class()) or registry in self._registries:
            return
        self._registries.append(registry)
        if self.app is not None:
            self._attach(registry)

    def _attach(self, registry: ServiceRegistry) -> None:
        if registry.broker is None:
            url = self.redis_url()
            if not url:
                return  # this process only, as before
            if self.broker is None:
                from .brokers import make_broker

                s = self.settings
                self.broker = make_broker(url, s.cluster_heartbeat, s.cluster_expiry)
            registry.broker = broker = self.broker
            for service in registry:
                if service.broker is not broker:
                    service.use_broker(broker)
        broker = registry.broker
        if broker in self._brokers:
            return
        self._brokers.append(broker)
        if not broker.started:
            # nothing would cross processes (and nothing would say so) until it starts
            log.info("%s of %r is not started: snorky_sync starts it when the app "
                     "serves its first request", type(broker).__name__, registry)
        if self._serving:
            self._start(broker)

    def _starting_brokers(self, wsgi_app: Callable) -> Callable:
        """``wsgi_app`` that starts the brokers on its first request (in the
        process that serves: a gunicorn worker, not an importing tool)."""
        def app(environ, start_response):
            if not self._serving:
                self._start_all()
            return wsgi_app(environ, start_response)

        return app

    #: seconds the first requests wait for a distributed broker's first connection
    #: (so the first page's subscriptions are confirmed by Redis, not raced)
    first_connect_timeout = 2.0

    def _start_all(self) -> None:
        with self._ready_lock:
            if self._serving:
                return
            for broker in self._brokers:
                self._start(broker)
            for start in self._on_serve:
                start()
            deadline = time.monotonic() + self.first_connect_timeout
            for broker in self._brokers:
                event = getattr(broker, "connected_event", None)
                if event is not None:
                    event.wait(max(0.0, deadline - time.monotonic()))
            self._serving = True

    def _start(self, broker: Broker) -> None:
        if not broker.started:
            broker.start()
            log.info("%s started in process %d", _describe(broker), os.getpid())
            atexit.register(_stop, broker)

    def _add(self, path, endpoint, view, methods, websocket, options=None) -> None:
        assert self.app is not None  # routes are added once an app is attached
        self.app.add_url_rule(path, endpoint=endpoint, view_func=view,
                              methods=methods, websocket=websocket, **(options or {}))

    def _route(self, path, endpoint, view, methods, websocket, options=None) -> None:
        route = (path, endpoint, view, methods, websocket, options)
        self._routes.append(route)
        if self.app is not None:
            self._add(*route)

    def websocket(self, path: str, registry, *, authenticate: Callable | None = None,
                  allowed_origins: Sequence[str] | None = _UNSET,
                  ping_interval: float | None = None, max_frame_size: int | None = None,
                  max_queue_frames: int | None = None, max_queue_bytes: int | None = None,
                  rate_limit: float | None = None, rate_burst: float | None = None,
                  byte_rate: float | None = None, byte_burst: float | None = None,
                  max_connections: int | None = None,
                  max_connections_per_identity: int | None = None,
                  write_timeout: float | None = None,
                  cookie_identity: bool | None = None,
                  public_origin: str | Sequence[str] | None = None,
                  endpoint: str | None = None, _mount: bool = True) -> WebSocketOptions:
        """Serve ``registry`` over WebSocket at ``path``.

        ``authenticate(request)`` returns the connection's identity (or None);
        raising :class:`~snorky_sync.endpoints.websocket.Reject` refuses it.
        ``allowed_origins`` None allows every origin (as Snorky 0.1 did),
        except when the identity comes from cookies (``session_identity``, a
        hook marked with :func:`snorky_sync.auth.uses_cookies`, or
        ``cookie_identity=True``): then only this server's own origin (the
        Host, or ``public_origin`` behind a proxy that rewrites it).
        """
        _check_registry("websocket", registry)
        self._mounted(registry)
        from .services.configure import configure_services

        # SNORKY_MAX_*, SNORKY_BACKEND_ONLY_CHANNELS; single-use tokens where they can hold
        configure_services(registry, self.settings, authenticate)
        if authenticate is not None and not callable(authenticate):
            raise TypeError("websocket(authenticate=...) wants a callable taking the request, "
                            f"got {type(authenticate).__name__}")
        s = self.settings
        opts = WebSocketOptions(
            ping_interval=ping_interval or s.ping_interval,
            max_frame_size=max_frame_size or s.max_frame_size,
            allowed_origins=s.allowed_origins if allowed_origins is _UNSET else allowed_origins,
            authenticate=authenticate,
            max_queue_frames=max_queue_frames or s.max_queue_frames,
            max_queue_bytes=max_queue_bytes or s.max_queue_bytes,
            rate_limit=s.rate_limit if rate_limit is None else rate_limit,
            rate_burst=s.rate_burst if rate_burst is None else rate_burst,
            byte_rate=s.byte_rate_limit if byte_rate is None else byte_rate,
            byte_burst=s.byte_rate_burst if byte_burst is None else byte_burst,
            max_connections=max_connections or s.max_connections,
            socket_sndbuf=s.socket_sndbuf,
            max_connections_per_identity=(max_connections_per_identity
                                          or s.max_connections_per_identity),
            write_timeout=s.write_timeout if write_timeout is None else write_timeout,
            close_timeout=s.close_timeout,
            cookie_identity=cookie_identity,
            public_origins=((public_origin,) if isinstance(public_origin, str) else
                            tuple(public_origin) if public_origin else s.public_origin),
            connect_rate=self.connect_rate if self.connect_rate.enabled else None,
        )
        if not _mount:
            return opts
        view = make_websocket_view(registry, opts)
        self._route(path, endpoint or f"snorky_ws_{path}", view, ["GET"], True)
        return opts

    def sockjs(self, path: str, registry, *, authenticate: Callable | None = None,
               allowed_origins: Sequence[str] | None = _UNSET,
               heartbeat: float | None = None, disconnect_delay: float | None = None,
               response_limit: int | None = None, max_body_size: int | None = None,
               cookie_needed: bool | None = None, websocket: bool = True,
               sockjs_url: str | None = None, bind_address: bool | None = None,
               endpoint: str | None = None, **limits) -> SockJSOptions:
        """Serve ``registry`` over SockJS (protocol 0.3.3) under ``path``.

        Takes :meth:`websocket`'s options (``authenticate`` sees the request
        that opens the session, ``?token=`` works on the SockJS URL) plus
        SockJS's: ``heartbeat`` and ``disconnect_delay`` (seconds),
        ``response_limit`` (bytes per streaming response), ``max_body_size``
        (of a send), ``cookie_needed`` (JSESSIONID), ``websocket`` (offer
        that transport), ``sockjs_url`` (sockjs-client for the iframe page),
        ``bind_address`` (anonymous sessions answer only their client's
        address; see docs/sockjs.md).
        """
        base = self.websocket(path + "/websocket", registry, authenticate=authenticate,
                              allowed_origins=allowed_origins, endpoint=None, _mount=False,
                              **limits)
        s = self.settings
        opts = SockJSOptions(
            **{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
            heartbeat=heartbeat or s.sockjs_heartbeat,
            disconnect_delay=disconnect_delay or s.sockjs_disconnect_delay,
            response_limit=response_limit or s.sockjs_response_limit,
            max_body_size=max_body_size or s.sockjs_max_body,
            cookie_needed=s.sockjs_cookie_needed if cookie_needed is None else cookie_needed,
            websocket=websocket,
            sockjs_url=sockjs_url or s.sockjs_url or SockJSOptions.sockjs_url,
            bind_address=s.sockjs_bind_address if bind_address is None else bind_address,
            trusted_proxies=s.trusted_proxies,
        )
        self.mount_sockjs(path, registry, opts, endpoint)
        return opts

    def mount_sockjs(self, path: str, target, opts: SockJSOptions,
                     endpoint: str | None = None) -> None:
        """Mount a SockJS endpoint for ``target`` (a registry, or any object with
        ``client_connected``, ``process_message_raw`` and ``client_disconnected``)."""
        path = path.rstrip("/")
        self._mounted(target)
        view, _ = make_sockjs_view(target, opts, path)
        name = endpoint or f"snorky_sockjs_{path}"
        methods = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"]
        exact = {"merge_slashes": False, "strict_slashes": False}
        self._route(path, name, view, methods, False, exact)
        self._route(path + "/", name + "/", view, methods, False, exact)
        self._route(path + "/<path:rest>", name + "/*", view, methods, False, exact)
        self._route(path + "/<path:rest>", name + "/ws", view, ["GET"], True, exact)

    def backend(self, path: str, registry, *, api_key: str,
                max_body_size: int | None = None, only_port: int | None = None,
                endpoint: str | None = None) -> None:
        """Serve ``registry`` to trusted servers at ``path`` (POST, ``X-Backend-Key``).

        ``only_port``: serve it only to requests that arrived on that local
        port (bind the app to a public and a private port; see docs/deployment.md).
        """
        _check_registry("backend", registry)
        self._mounted(registry)
        _check_key(api_key)
        view = make_backend_view(registry, api_key, max_body_size or self.settings.backend_max_body,
                                 only_port=only_port)
        self._route(path, endpoint or f"snorky_backend_{path}", view,
                    ["GET", "POST", "PUT", "DELETE", "PATCH"], False)

    def metrics(self, path: str = "/metrics", *, api_key: str, only_port: int | None = None,
                broker=None, endpoint: str | None = None) -> None:
        """Serve Prometheus metrics at ``path`` to scrapers holding ``api_key``
        (``X-Backend-Key: KEY`` or ``Authorization: Bearer KEY``).

        Under several workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty
        directory) in the server's environment: every worker's values are then
        answered together, whichever worker takes the scrape (see
        docs/deployment.md).  ``snorky_broker_state`` shows the brokers of the
        registries mounted here (or ``broker``).
        """
        _check_key(api_key)
        brokers = (lambda: (broker,)) if broker is not None else (lambda: tuple(self._brokers))
        view = make_metrics_view(api_key, only_port, brokers=brokers, on_serve=self._on_serve)
        if self._serving:
            self._on_serve.pop()()
        self._route(path, endpoint or f"snorky_metrics_{path}", view, ["GET"], False)

    def health(self, path: str = "/healthz", *, endpoint: str | None = None) -> None:
        """Serve a health check at ``path`` (GET, no key: for load balancers).

        Answers 200 with JSON: ``status`` ("ok", or "degraded" while a broker
        is disconnected from Redis), ``connections`` (this process's open
        WebSockets) and ``broker`` (its state, peers and channels with Redis).
        """
        from flask import jsonify

        from .brokers import LocalBroker
        from .endpoints.websocket import live_clients

        def snorky_health():
            healths = [b.health() for b in self._brokers] or [LocalBroker().health()]
            degraded = any(h["state"] == "disconnected" for h in healths)
            body: dict[str, Any] = {"status": "degraded" if degraded else "ok",
                                    "connections": len(live_clients()), "broker": healths[0]}
            if len(healths) > 1:
                body["brokers"] = healths
            return jsonify(body)

        self._route(path, endpoint or f"snorky_health_{path}", snorky_health, ["GET"], False)


def _registry_class():
    from .registry import ServiceRegistry

    return ServiceRegistry


def _describe(broker) -> str:
    safe = getattr(broker, "_safe_url", None)
    return f"{type(broker).__name__} ({safe()})" if safe else type(broker).__name__


def _stop(broker) -> None:
    """At exit: what the broker still holds leaves, then it stops."""
    try:
        broker.flush(1.0)
        broker.stop()
    except Exception:
        pass


def _check_registry(method: str, registry) -> None:
    if not isinstance(registry, _registry_class()):
        raise TypeError(f"Snorky.{method}(path, registry): registry is a ServiceRegistry, "
                        f"got {type(registry).__name__}")


def _check_key(api_key) -> None:
    if not isinstance(api_key, str) or len(api_key) < MIN_API_KEY_LENGTH:
        raise ValueError(
            f"the backend API key must be a string of at least {MIN_API_KEY_LENGTH} characters")

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

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import checks
from . import outbound as _outbound
from .endpoints import connections as _connections
from .endpoints.backend_http import make_backend_view
from .endpoints.http_limits import with_body_deadline
from .endpoints.metrics_http import make_metrics_view
from .endpoints.operator_http import make_operator_views
from .endpoints.sockjs import SockJSOptions, make_sockjs_view
from .endpoints.websocket import Target, WebSocketOptions, make_websocket_view
from .runtime import Runtime
from .services.token_refresh import with_token_refresh
from .settings import DEFAULT_APP_ONLY, MIN_API_KEY_LENGTH, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask, Response

    from .brokers.base import Broker
    from .registry import ServiceRegistry

__all__ = ["Snorky"]

log = logging.getLogger("snorky_sync")

_UNSET: Any = object()


class Snorky:
    """Flask extension: snorky_sync's endpoints, for one app or several.

    It keeps no app: each app it is attached to gets its own
    :class:`~snorky_sync.runtime.Runtime` (``app.extensions["snorky_sync"]``),
    with its settings read from that app's ``app.config`` (``SNORKY_*``, the
    environment as fallback) when it is attached.  Endpoints declared on the
    extension are added to every app it is attached to, before or after.
    ``settings``: a :class:`~snorky_sync.settings.Settings` for every app,
    instead of their config.
    """

    def __init__(self, app: Flask | None = None, settings: Settings | None = None) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise TypeError("Snorky(app, settings): settings is a snorky_sync.settings.Settings, "
                            f"got {type(settings).__name__}")
        self._settings = settings
        self._runtimes: list[Runtime] = []            # one per app attached
        self._routes: list[Callable[[Runtime], None]] = []  # each endpoint, for every app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Attach to ``app``: its settings are read now (``app.config``, then the
        environment) and every endpoint declared before is added to it."""
        from flask import Flask

        if not isinstance(app, Flask):
            raise TypeError(f"Snorky(app) / init_app(app): app is a Flask application, "
                            f"got {type(app).__name__}")
        if "snorky_sync" in app.extensions:
            raise RuntimeError(f"{app!r} has a snorky_sync extension already: one Snorky per "
                               "app (declare every endpoint on it)")
        settings = self._settings or Settings.from_config(app.config)
        _refuse_default_app_settings(settings)
        runtime = Runtime(app, settings, self)
        app.extensions["snorky_sync"] = runtime
        self._runtimes.append(runtime)
        # request bodies have a deadline under every server (gunicorn reads them without one)
        wsgi: WSGIApplication = with_body_deadline(app.wsgi_app, settings.body_timeout)
        wsgi = runtime.starting(wsgi)
        wsgi = _upgrade_only_on_get(wsgi)
        # Flask's middleware hook, typed as a method: a WSGI callable goes there
        app.wsgi_app = wsgi  # type: ignore[method-assign, assignment]
        if "snorky_sync_static" not in app.blueprints:
            # the JavaScript client for your pages: /snorky_sync/static/snorky.js
            from flask import Blueprint

            app.register_blueprint(Blueprint("snorky_sync_static", __name__, static_folder="static",
                                             static_url_path="/snorky_sync/static"))
        for install in self._routes:
            install(runtime)

    # -- the apps' state ----------------------------------------------------------------
    @staticmethod
    def runtime(app: Flask) -> Runtime:
        """``app``'s :class:`~snorky_sync.runtime.Runtime` (its settings, connections,
        broker)."""
        return Runtime.of(app)

    def _only(self, what: str) -> Runtime | None:
        if len(self._runtimes) > 1:
            raise RuntimeError(f"Snorky.{what}: this extension serves {len(self._runtimes)} apps; "
                               f"use Snorky.runtime(app).{what}")
        return self._runtimes[0] if self._runtimes else None

    @property
    def settings(self) -> Settings:
        """The settings of the app this extension is attached to (before any:
        the ``settings`` given, else the environment's)."""
        runtime = self._only("settings")
        if runtime is not None:
            return runtime.settings
        return self._settings or Settings.from_env()

    @property
    def broker(self) -> Broker | None:
        """The Redis broker made from ``SNORKY_REDIS_URL`` for the app's
        registries mounted without one (None: no URL, or none mounted)."""
        runtime = self._only("broker")
        return runtime.broker if runtime is not None else None

    def redis_url(self) -> str | None:
        """``SNORKY_REDIS_URL`` of the app this extension is attached to."""
        return self.settings.redis_url

    # -- login sessions (cookie identities) ---------------------------------------------
    def logout(self, reason: str = "Logged out") -> int:
        """Call it in your logout view: close every connection (WebSocket or
        SockJS session) opened with this request's login session, on every
        process of the app (through its broker, with ``SNORKY_REDIS_URL``),
        with close code 4003 (snorky.js does not reconnect) and ``reason``.
        The identity's connections opened from other browsers stay.  The
        session's mark (:data:`~snorky_sync.login_sessions.LOGIN_SESSION_FIELD`)
        is taken out of the session; clear the rest yourself.  Returns how
        many this process closed.  See docs/security.md (Logging out).

        The login session is the one ``session_identity`` reads (a mark it puts
        in the Flask session after the login), for the endpoints of this app
        whose identity comes from cookies."""
        from flask import current_app

        from .login_sessions import LoginSessions

        _check_reason("logout", reason)
        sessions = LoginSessions.of(Runtime.of(current_app), create=False)
        return 0 if sessions is None else sessions.logout(reason)

    def disconnect_session(self, identity: Any, session: str, reason: str = "Logged out",
                           app: Flask | None = None) -> int:
        """Close the connections of ``identity`` opened with the login session
        ``session`` (what a cookie ``authenticate`` hook of yours returned as
        ``Authenticated(identity, session=...)``, e.g. a server-side session
        id), on every process, with 4003 and ``reason``; any time, not only in
        a request.  ``app``: which app (needed when the extension serves several).
        How many this process closed."""
        from .login_sessions import LoginSessions

        _check_reason("disconnect_session", reason)
        if not isinstance(session, str):
            raise TypeError(f"Snorky.disconnect_session(session): text, got {type(session).__name__}")
        runtime = Runtime.of(app) if app is not None else self._only("disconnect_session")
        sessions = None if runtime is None else LoginSessions.of(runtime, create=False)
        if sessions is None:
            return 0  # no endpoint of a cookie identity: no connection has a login session
        return sessions.control.disconnect_session(identity, session, reason=reason)

    def _declare(self, install: Callable[[Runtime], None]) -> None:
        """An endpoint: added to every app attached, now and later."""
        self._routes.append(install)
        for runtime in self._runtimes:
            install(runtime)

    @staticmethod
    def _add(runtime: Runtime, path: str, endpoint: str, view: Callable[..., Any], methods: list[str],
             websocket: bool, options: dict[str, Any] | None = None) -> None:
        runtime.app.add_url_rule(path, endpoint=endpoint, view_func=view,
                                 methods=methods, websocket=websocket, **(options or {}))

    def websocket(self, path: str, registry: ServiceRegistry, *, authenticate: Callable[..., Any] | None = None,
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
                  endpoint: str | None = None) -> None:
        """Serve ``registry`` over WebSocket at ``path``.

        ``authenticate(request)`` returns the connection's identity (or None);
        raising :class:`~snorky_sync.endpoints.websocket.Reject` refuses it.
        ``allowed_origins`` None allows every origin (as Snorky 0.1 did),
        except when the identity comes from cookies (``session_identity``, a
        hook marked with :func:`snorky_sync.auth.uses_cookies`, or
        ``cookie_identity=True``): then only this server's own origin (the
        Host, or ``public_origin`` behind a proxy that rewrites it).  The
        other options override the app's ``SNORKY_*`` settings for this
        endpoint.
        """
        _check_registry("websocket", registry)
        _check_authenticate(authenticate)
        limits: dict[str, Any] = dict(allowed_origins=allowed_origins, ping_interval=ping_interval,
                      max_frame_size=max_frame_size, max_queue_frames=max_queue_frames,
                      max_queue_bytes=max_queue_bytes, rate_limit=rate_limit,
                      rate_burst=rate_burst, byte_rate=byte_rate, byte_burst=byte_burst,
                      max_connections=max_connections,
                      max_connections_per_identity=max_connections_per_identity,
                      write_timeout=write_timeout, cookie_identity=cookie_identity,
                      public_origin=public_origin)
        _check_options("websocket", **{k: v for k, v in limits.items() if k in _NUMBERS})

        def install(runtime: Runtime) -> None:
            opts = _websocket_options(runtime, registry, authenticate, **limits)
            view = make_websocket_view(with_token_refresh(registry, authenticate), opts)
            self._add(runtime, path, endpoint or f"snorky_ws_{path}", view, ["GET"], True)

        self._declare(install)

    def sockjs(self, path: str, registry: ServiceRegistry, *, authenticate: Callable[..., Any] | None = None,
               allowed_origins: Sequence[str] | None = _UNSET,
               heartbeat: float | None = None, disconnect_delay: float | None = None,
               response_limit: int | None = None, max_body_size: int | None = None,
               cookie_needed: bool | None = None, websocket: bool = True,
               sockjs_url: str | None = None, bind_address: bool | None = None,
               endpoint: str | None = None, **limits: Any) -> None:
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
        _check_registry("sockjs", registry)
        _check_authenticate(authenticate)
        unknown = set(limits) - _WEBSOCKET_OPTIONS
        if unknown:
            raise TypeError(f"Snorky.sockjs() got unexpected keyword argument(s): "
                            f"{', '.join(sorted(unknown))}")
        _check_options("sockjs", heartbeat=heartbeat, disconnect_delay=disconnect_delay,
                       response_limit=response_limit, max_body_size=max_body_size,
                       **{k: v for k, v in limits.items() if k in _NUMBERS})
        path = path.rstrip("/")

        def install(runtime: Runtime) -> None:
            base = _websocket_options(runtime, registry, authenticate,
                                      allowed_origins=allowed_origins, **limits)
            s = runtime.settings
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
            self._install_sockjs(runtime, path, with_token_refresh(registry, authenticate), opts, endpoint)

        self._declare(install)

    def mount_sockjs(self, path: str, target: Target, opts: SockJSOptions,
                     endpoint: str | None = None) -> None:
        """Mount a SockJS endpoint for ``target`` (a registry, or any object with
        ``client_connected``, ``process_message_raw`` and ``client_disconnected``)
        with these options, as they are (``opts.connections`` and
        ``opts.outbound`` left at their defaults get the app's)."""
        path = path.rstrip("/")

        def install(runtime: Runtime) -> None:
            own = opts
            if own.connections is _connections.DEFAULT or own.outbound is _outbound.DEFAULT:
                own = dataclasses.replace(
                    opts,
                    connections=(runtime.connections if opts.connections is _connections.DEFAULT
                                 else opts.connections),
                    outbound=(runtime.outbound if opts.outbound is _outbound.DEFAULT
                              else opts.outbound))
            self._install_sockjs(runtime, path, target, own, endpoint)

        self._declare(install)

    def _install_sockjs(self, runtime: Runtime, path: str, target: Target, opts: SockJSOptions,
                        endpoint: str | None) -> None:
        if isinstance(target, _registry_class()):
            runtime.mount(target)
        view, _ = make_sockjs_view(target, opts, path)
        name = endpoint or f"snorky_sockjs_{path}"
        methods = ["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"]
        exact = {"merge_slashes": False, "strict_slashes": False}
        add = self._add
        add(runtime, path, name, view, methods, False, exact)
        add(runtime, path + "/", name + "/", view, methods, False, exact)
        add(runtime, path + "/<path:rest>", name + "/*", view, methods, False, exact)
        add(runtime, path + "/<path:rest>", name + "/ws", view, ["GET"], True, exact)

    def backend(self, path: str, registry: ServiceRegistry, *, api_key: str,
                max_body_size: int | None = None, only_port: int | None = None,
                operator: bool | None = None, endpoint: str | None = None) -> None:
        """Serve ``registry`` to trusted servers at ``path`` (POST, ``X-Backend-Key``).

        ``only_port``: serve it only to requests that arrived on that local
        port (bind the app to a public and a private port; see docs/deployment.md).
        ``operator``: the operator page at ``path + "/operator"`` (the same
        port restriction; the page asks for the key and calls ``path``; see
        docs/operator.md).  Default: on when ``registry`` has a
        :class:`~snorky_sync.services.control.ControlService`; True without
        one is a ValueError.
        """
        _check_registry("backend", registry)
        _check_key("backend", api_key)
        _check_options("backend", max_body_size=max_body_size, only_port=only_port)
        if operator is not None and not isinstance(operator, bool):
            raise TypeError(f"Snorky.backend(operator=...) is True, False or None, got {operator!r}")

        def install(runtime: Runtime) -> None:
            runtime.mount(registry)
            view = make_backend_view(registry, api_key,
                                     max_body_size or runtime.settings.backend_max_body,
                                     only_port=only_port)
            self._add(runtime, path, endpoint or f"snorky_backend_{path}", view,
                      ["GET", "POST", "PUT", "DELETE", "PATCH"], False)
            if operator is not False:
                self._install_operator(runtime, path, registry, operator, only_port, endpoint)

        self._declare(install)

    def _install_operator(self, runtime: Runtime, path: str, registry: ServiceRegistry,
                          operator: bool | None, only_port: int | None, endpoint: str | None) -> None:
        from .services.control import ControlService

        controls = [service for service in registry if isinstance(service, ControlService)]
        if not controls:
            if operator:
                raise ValueError(f"Snorky.backend({path!r}, operator=True): the operator page needs a "
                                 "ControlService in the backend registry")
            return
        page, asset = make_operator_views(path, controls[0].name, only_port)
        name = endpoint or f"snorky_backend_{path}"
        base = path.rstrip("/") + "/operator"
        self._add(runtime, base, f"{name}_operator", page, ["GET"], False)
        self._add(runtime, base + "/<name>", f"{name}_operator_asset", asset, ["GET"], False)

    def metrics(self, path: str = "/metrics", *, api_key: str, only_port: int | None = None,
                broker: Broker | None = None, endpoint: str | None = None) -> None:
        """Serve Prometheus metrics at ``path`` to scrapers holding ``api_key``
        (``X-Backend-Key: KEY`` or ``Authorization: Bearer KEY``).

        Under several workers set ``PROMETHEUS_MULTIPROC_DIR`` (an empty
        directory) in the server's environment: every worker's values are then
        answered together, whichever worker takes the scrape (see
        docs/deployment.md).  The counters are the process's (every app of
        it); the connection and outbound gauges are the app's.
        ``snorky_broker_state`` shows the brokers of the registries mounted in
        the app (or ``broker``).
        """
        _check_key("metrics", api_key)
        _check_options("metrics", only_port=only_port)

        def install(runtime: Runtime) -> None:
            brokers = ((lambda: (broker,)) if broker is not None
                       else (lambda: tuple(runtime.brokers)))
            view = make_metrics_view(api_key, only_port, brokers=brokers,
                                     on_serve=runtime.on_serve, runtime=runtime)
            if runtime.serving:
                runtime.on_serve.pop()()
            self._add(runtime, path, endpoint or f"snorky_metrics_{path}", view, ["GET"], False)

        self._declare(install)

    def health(self, path: str = "/healthz", *, endpoint: str | None = None) -> None:
        """Serve a health check at ``path`` (GET, no key: for load balancers).

        Answers 200 with JSON: ``status`` ("ok", or "degraded" while a broker
        is disconnected from Redis, or from one of its shards), ``connections``
        (the app's open WebSockets and SockJS sessions in this process) and
        ``broker`` (its state, peers and channels with Redis; with several
        shards ``shards``, each one's URL without password, state and channels).
        """
        def install(runtime: Runtime) -> None:
            from flask import jsonify

            from .brokers import LocalBroker

            def snorky_health() -> Response:
                healths = [b.health() for b in runtime.brokers] or [LocalBroker().health()]
                degraded = any(h["state"] in ("disconnected", "degraded") for h in healths)
                body: dict[str, Any] = {"status": "degraded" if degraded else "ok",
                                        "connections": len(runtime.connections),
                                        "broker": healths[0]}
                if len(healths) > 1:
                    body["brokers"] = healths
                return jsonify(body)

            self._add(runtime, path, endpoint or f"snorky_health_{path}", snorky_health,
                      ["GET"], False)

        self._declare(install)


_WEBSOCKET_OPTIONS = {"allowed_origins", "ping_interval", "max_frame_size", "max_queue_frames",
                      "max_queue_bytes", "rate_limit", "rate_burst", "byte_rate", "byte_burst",
                      "max_connections", "max_connections_per_identity", "write_timeout",
                      "cookie_identity", "public_origin"}


def _websocket_options(runtime: Runtime, registry: ServiceRegistry,
                       authenticate: Callable[[Any], Any] | None, *,
                       allowed_origins: Sequence[str] | None = _UNSET,
                       ping_interval: float | None = None, max_frame_size: int | None = None,
                       max_queue_frames: int | None = None, max_queue_bytes: int | None = None,
                       rate_limit: float | None = None, rate_burst: float | None = None,
                       byte_rate: float | None = None, byte_burst: float | None = None,
                       max_connections: int | None = None,
                       max_connections_per_identity: int | None = None,
                       write_timeout: float | None = None,
                       cookie_identity: bool | None = None,
                       public_origin: str | Sequence[str] | None = None) -> WebSocketOptions:
    """A public endpoint's options in ``runtime``'s app; mounts ``registry`` there."""
    from .services.configure import configure_services

    runtime.mount(registry)
    if authenticate is not None and (cookie_identity if cookie_identity is not None
                                     else getattr(authenticate, "snorky_uses_cookies", False)):
        # a cookie identity: its connections are tagged with their login session (logout())
        from .login_sessions import LoginSessions

        sessions = LoginSessions.of(runtime)
        key = getattr(authenticate, "snorky_session_key", None)
        if sessions is not None and key is not None:
            sessions.add_key(key)
    s = runtime.settings
    # SNORKY_MAX_*, SNORKY_BACKEND_ONLY_CHANNELS; single-use tokens where they can hold
    configure_services(registry, s, authenticate)
    return WebSocketOptions(
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
        connect_rate=runtime.connect_rate if runtime.connect_rate.enabled else None,
        connections=runtime.connections,
        outbound=runtime.outbound,
    )


def _check_reason(method: str, reason: object) -> None:
    from .services.control import MAX_REASON_BYTES

    if not isinstance(reason, str):
        raise TypeError(f"Snorky.{method}(reason): text, got {type(reason).__name__}")
    if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
        raise ValueError(f"Snorky.{method}(reason): at most {MAX_REASON_BYTES} UTF-8 bytes")


def _refuse_default_app_settings(settings: Settings) -> None:
    """A setting only the default app reads, given in a mounted app's
    ``app.config``, would do nothing: say what does it there."""
    wrong = sorted(name for name in settings._from_app if name in DEFAULT_APP_ONLY)
    if wrong:
        raise ValueError("app.config: " + "; ".join(
            f"SNORKY_{name.upper()} is read only by the default app (snorky_sync.app); "
            f"in your app use {DEFAULT_APP_ONLY[name]}" for name in wrong))


def _upgrade_only_on_get(wsgi_app: WSGIApplication) -> WSGIApplication:
    """A WebSocket upgrade is a GET (RFC 6455): on another method the
    ``Upgrade`` header is dropped, so the router sends the request to the
    endpoint's HTTP view (a SockJS URL answers its own empty 405) instead of
    answering Flask's 405 page for the WebSocket rule."""
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "HTTP_UPGRADE" in environ and environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            del environ["HTTP_UPGRADE"]
        return wsgi_app(environ, start_response)

    return app


def _check_authenticate(authenticate: object) -> None:
    if authenticate is not None and not callable(authenticate):
        raise TypeError("websocket(authenticate=...) wants a callable taking the request, "
                        f"got {type(authenticate).__name__}")


def _registry_class() -> type[ServiceRegistry]:
    from .registry import ServiceRegistry

    return ServiceRegistry


def _check_registry(method: str, registry: object) -> None:
    if not isinstance(registry, _registry_class()):
        raise TypeError(f"Snorky.{method}(path, registry): registry is a ServiceRegistry, "
                        f"got {type(registry).__name__}")


def _check_key(method: str, api_key: object) -> None:
    checks.text(f"Snorky.{method}(api_key=...)", api_key, MIN_API_KEY_LENGTH,
                what="the backend API key (a string)")


#: the endpoints' numeric options: seconds (or rates) and counts, None: the setting's
_SECONDS = {"ping_interval", "rate_limit", "rate_burst", "byte_rate", "byte_burst",
            "write_timeout", "heartbeat", "disconnect_delay"}
_NUMBERS = _SECONDS | {"max_frame_size", "max_queue_frames", "max_queue_bytes", "max_connections",
                       "max_connections_per_identity", "response_limit", "max_body_size",
                       "only_port"}
#: ... of them, those that must be above 0 (0 would mean nothing: no pings, no room)
_POSITIVE = {"ping_interval", "heartbeat", "disconnect_delay", "max_frame_size", "max_queue_frames",
             "max_queue_bytes", "max_connections", "max_connections_per_identity", "response_limit",
             "max_body_size"}


def _check_options(method: str, **options: Any) -> None:
    """TypeError for an option of another kind, ValueError for one below 0
    (or 0 itself, for those of ``_POSITIVE``)."""
    for name, value in options.items():
        if value is not None:
            where = f"Snorky.{method}({name}=...)"
            if name in _SECONDS:
                checks.seconds(where, value, above=name in _POSITIVE)
            else:
                checks.count(where, value, minimum=1 if name in _POSITIVE else 0)

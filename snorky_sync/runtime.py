"""What one app's Snorky extension owns in this process: its Runtime.

``Snorky(app)`` (or ``init_app(app)``) makes one :class:`Runtime` per app and
keeps it in ``app.extensions["snorky_sync"]`` (:meth:`Runtime.of`).  It holds
what used to be process-wide: the app's settings (``SNORKY_*`` from
``app.config``, else the environment), its open connections and their limits,
its budget of outbound bytes, its rate of new connections, its HTTP limits and
its brokers (started when the app serves its first request, stopped when the
process exits).  Two apps in one process share none of these.

What stays the process's, because it is the event loop's: the flusher and the
reader parker (one of each per gevent hub), the shutdown (:func:`close_all`
closes every app's connections), the metrics counters (``/metrics`` answers
for the process, and with ``PROMETHEUS_MULTIPROC_DIR`` for every worker), and
gevent-websocket's handler class (its HTTP limits are the strictest of the
apps that load in a worker).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .endpoints.admission import ConnectRate
from .endpoints.connections import Connections
from .endpoints.http_limits import HTTPLimits, install_geventwebsocket
from .outbound import OutboundBudget, default_memory_budget

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .brokers.base import Broker
    from .registry import ServiceRegistry
    from .settings import Settings

__all__ = ["Runtime"]

log = logging.getLogger("snorky_sync")


class Runtime:
    """One app's snorky_sync state in this process (see the module)."""

    #: seconds the first requests wait for a distributed broker's first connection
    #: (so the first page's subscriptions are confirmed by Redis, not raced)
    first_connect_timeout = 2.0

    def __init__(self, app: Any, settings: Settings, extension: Any = None) -> None:
        s = self.settings = settings
        self.app = app
        #: the Snorky extension that made it
        self.extension = extension
        self.connections = Connections()
        self.outbound = OutboundBudget(s.max_outbound_memory or default_memory_budget(s.workers),
                                       s.write_timeout)
        # one bucket for every endpoint of this app (the app's rate in this process)
        self.connect_rate = ConnectRate(s.connect_rate, s.connect_burst, s.connect_rate_per_ip,
                                        s.connect_burst_per_ip, s.trusted_proxies)
        self.http_limits = HTTPLimits.from_settings(s)
        # gevent-websocket's worker handler gets the embedded server's HTTP deadlines now,
        # as the app loads (before the worker serves)
        install_geventwebsocket(self.http_limits)
        #: the broker made from SNORKY_REDIS_URL for the registries mounted
        #: without one (None: no URL, or no such registry mounted yet)
        self.broker: Broker | None = None
        self.registries: list[ServiceRegistry] = []  # mounted, in order
        self.brokers: list[Broker] = []              # theirs, to start and stop
        self.serving = False                         # the app served a request
        self.on_serve: list[Callable[[], None]] = []  # what starts then (the metrics export)
        self._ready_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Runtime of {getattr(self.app, 'name', self.app)!r} {self.connections!r}>"

    @staticmethod
    def of(app: Any) -> Runtime:
        """``app``'s Runtime; RuntimeError if no Snorky extension is attached to it."""
        runtime = getattr(app, "extensions", {}).get("snorky_sync")
        if not isinstance(runtime, Runtime):
            raise RuntimeError(f"{app!r} has no snorky_sync extension: Snorky(app) or "
                               "snorky.init_app(app) first")
        return runtime

    # -- brokers -----------------------------------------------------------------------
    def mount(self, registry: ServiceRegistry) -> None:
        """``registry`` is served by this app: give it the app's broker when it
        has none (``SNORKY_REDIS_URL``), start its broker when the app serves.
        A service of it with a ``use_runtime(runtime)`` method gets this
        runtime (:class:`~snorky_sync.services.control.ControlService`: the
        app's connections)."""
        if registry in self.registries:
            return
        self.registries.append(registry)
        for service in registry:  # a service acting on the app's connections (ControlService)
            use_runtime = getattr(service, "use_runtime", None)
            if use_runtime is not None:
                use_runtime(self)
        if registry.broker is None:
            url = self.settings.redis_url
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
        elif self.settings.redis_url and not registry.broker.distributed:
            log.warning("%r has a %s of its own: its services serve this process only, although "
                        "SNORKY_REDIS_URL is set for the app (make the registry without a broker "
                        "to give it the app's Redis broker)", registry, type(registry.broker).__name__)
        broker = registry.broker
        if broker in self.brokers:
            return
        self.brokers.append(broker)
        if not broker.started:
            # nothing would cross processes (and nothing would say so) until it starts
            log.info("%s of %r is not started: snorky_sync starts it when the app "
                     "serves its first request", type(broker).__name__, registry)
        if self.serving:
            self._start(broker)

    def starting(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        """``wsgi_app`` that starts the brokers on its first request (in the
        process that serves: a gunicorn worker, not an importing tool)."""
        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            if not self.serving:
                self.start_all()
            return wsgi_app(environ, start_response)

        return app

    def start_all(self) -> None:
        with self._ready_lock:
            if self.serving:
                return
            for broker in self.brokers:
                self._start(broker)
            for start in self.on_serve:
                start()
            deadline = time.monotonic() + self.first_connect_timeout
            for broker in self.brokers:
                event = getattr(broker, "connected_event", None)
                if event is not None:
                    event.wait(max(0.0, deadline - time.monotonic()))
            self.serving = True

    def _start(self, broker: Broker) -> None:
        if not broker.started:
            broker.start()
            log.info("%s started in process %d", _describe(broker), os.getpid())
            atexit.register(_stop, broker)


def _describe(broker: Broker) -> str:
    safe = getattr(broker, "_safe_url", None)
    return f"{type(broker).__name__} ({safe()})" if safe else type(broker).__name__


def _stop(broker: Broker) -> None:
    """At exit: what the broker still holds leaves, then it stops."""
    try:
        broker.flush(1.0)
        broker.stop()
    except Exception:
        pass

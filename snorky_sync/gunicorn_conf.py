"""gunicorn settings for snorky_sync, from ``SNORKY_*`` environment variables.

Shipped inside the package, so a pip install has it::

    gunicorn -c python:snorky_sync.gunicorn_conf myapp:app
    gunicorn -c python:snorky_sync.gunicorn_conf 'snorky_sync.app:create_app()'   # the default app

Your own config file can start from it and change what it needs::

    from snorky_sync.gunicorn_conf import *  # noqa: F401,F403
    workers = 4

Worker classes: ``gevent`` (default; snorky_sync performs the WebSocket
handshake itself) or ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker``.
Hooks: each worker warns when it is not monkey-patched and starts gevent's
monitor of its event loop (``SNORKY_MAX_BLOCKING_TIME``, :mod:`snorky_sync.hub_monitor`);
a stopping worker closes its WebSockets with 1001 (:mod:`snorky_sync.gunicorn_hooks`);
with ``PROMETHEUS_MULTIPROC_DIR`` the arbiter empties it at start and drops a dead
worker's gauges from ``/metrics`` (:mod:`snorky_sync.metrics`).
"""
import math
import os

from snorky_sync.gunicorn_hooks import post_worker_init, worker_exit
from snorky_sync.metrics import child_exit, on_starting
from snorky_sync.settings import Settings

__all__ = ["bind", "workers", "worker_class", "worker_connections", "timeout", "graceful_timeout",
           "keepalive", "backlog", "post_worker_init", "worker_exit", "child_exit", "on_starting"]

_settings = Settings.from_env()

bind = [os.environ.get("SNORKY_BIND", "%s:%s" % (
    os.environ.get("SNORKY_HOST", "127.0.0.1"), os.environ.get("SNORKY_PORT", "8002")))]
if os.environ.get("SNORKY_BACKEND_PORT"):
    # the backend and /metrics answer only on this private address
    bind.append("%s:%s" % (os.environ.get("SNORKY_BACKEND_HOST", "127.0.0.1"),
                           os.environ["SNORKY_BACKEND_PORT"]))
workers = int(os.environ.get("SNORKY_WORKERS", "1"))
worker_class = os.environ.get("SNORKY_WORKER_CLASS", "gevent")
# gunicorn's default (1000) would cap WebSocket connections per worker.
worker_connections = int(os.environ.get("SNORKY_WORKER_CONNECTIONS", "10000"))
# WebSocket connections live long; the async workers heartbeat on their own.
timeout = 30
graceful_timeout = int(os.environ.get("SNORKY_GRACEFUL_TIMEOUT", "10"))
# -k gevent: gunicorn's keepalive bounds both the idle wait between requests and
# the reading of a whole request head (from the accept, or from the end of the
# previous request): the stricter of SNORKY_KEEPALIVE_TIMEOUT and
# SNORKY_HEADER_TIMEOUT, so both hold.  (The gevent-websocket worker serves with
# pywsgi: snorky_sync's own limits apply there, see snorky_sync.endpoints.http_limits.)
# (gunicorn takes whole seconds)
_limits = [t for t in (_settings.keepalive_timeout, _settings.header_timeout) if t > 0]
keepalive = math.ceil(min(_limits)) if _limits else 0
# a reconnect storm (every page after a restart) must not overflow the listen
# queue: gunicorn's 2048 reset connections with 20,000 clients
backlog = int(os.environ.get("SNORKY_BACKLOG", "4096"))

# post_worker_init: the not-patched warning and the event loop's monitor, in each worker.
# worker_exit: close WebSockets with 1001 when a worker stops (SIGTERM, HUP, max-requests).
# on_starting, child_exit: /metrics of all workers (PROMETHEUS_MULTIPROC_DIR) starts empty, and
# forgets the gauges of a worker that died (snorky_sync.metrics).

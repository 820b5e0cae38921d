"""gunicorn settings for snorky_sync, from SNORKY_* environment variables.

    gunicorn -c gunicorn.conf.py wsgi:app

Worker classes: ``gevent`` (default; snorky_sync performs the WebSocket
handshake itself) or ``geventwebsocket.gunicorn.workers.GeventWebSocketWorker``.
"""
import os

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
keepalive = 5
# a reconnect storm (every page after a restart) must not overflow the listen
# queue: gunicorn's 2048 reset connections with 20,000 clients
backlog = int(os.environ.get("SNORKY_BACKLOG", "4096"))

# Close WebSockets with 1001 when a worker stops (SIGTERM, HUP, max-requests).
from snorky_sync.gunicorn_hooks import worker_exit  # noqa: E402,F401

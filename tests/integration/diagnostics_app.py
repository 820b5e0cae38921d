"""A user's own app, as docs/writing-a-service.md and docs/deployment.md
show it, for tests/integration/test_diagnostics.py: its own RPC service
(with the usual mistakes to make), ``snorky_sync.configure_logging()``,
and ``python tests/integration/diagnostics_app.py``: Flask's development
server (``app.run()``), which cannot serve WebSockets.

Environment: APP_LOG_LEVEL (default DEBUG), APP_LOG_JSON=1, SNORKY_API_KEY
(/metrics), PORT (``app.run()``).
"""
import logging
import os

import gevent
from flask import Flask

import snorky_sync
from snorky_sync import RPCService, ServiceRegistry, Snorky, rpc_command

snorky_sync.configure_logging(os.environ.get("APP_LOG_LEVEL", "DEBUG"),
                              json=os.environ.get("APP_LOG_JSON") == "1")
log = logging.getLogger("diagnostics_app")


class Notes(RPCService):
    @rpc_command
    def add_note(self, req, title, body=""):
        return {"title": title, "body": body}

    def forgotten(self, req):  # no @rpc_command: not callable by a client
        return "never"

    @rpc_command
    def hold(self, req, seconds):
        gevent.sleep(seconds)  # cooperative, yet the service's lock is held meanwhile
        return seconds


registry = ServiceRegistry([Notes("notes")])
app = Flask(__name__)
snorky = Snorky(app)
snorky.websocket("/ws", registry)
snorky.sockjs("/sockjs", registry)
if hasattr(snorky, "metrics"):
    snorky.metrics("/metrics", api_key=os.environ["SNORKY_API_KEY"])
else:  # before Snorky.metrics()
    from snorky_sync.endpoints.metrics_http import make_metrics_view

    app.add_url_rule("/metrics", view_func=make_metrics_view(os.environ["SNORKY_API_KEY"]))
log.info("diagnostics app loaded (pid %d)", os.getpid())

if __name__ == "__main__":
    app.run("127.0.0.1", int(os.environ["PORT"]))

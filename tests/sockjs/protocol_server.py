"""The four services sockjs-protocol's test suite needs, on snorky_sync's SockJS code.

    python tests/sockjs/protocol_server.py --port 8081   # by hand
    .venv/bin/python -m pytest tests/sockjs/test_official_suite.py   # sockjs-protocol's suite (own servers)

``/echo`` answers every message with itself, ``/close`` closes each session
at once with ``c[3000,"Go away!"]``, ``/disabled_websocket_echo`` is echo
without the WebSocket transport, ``/cookie_needed_echo`` sets JSESSIONID.
Streaming responses are cut after 4096 bytes, as the suite expects.
Also servable by gunicorn: ``tests.sockjs.protocol_server:app``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flask import Flask  # noqa: E402

from snorky_sync import Snorky, wire  # noqa: E402,F401
from snorky_sync.endpoints.sockjs import SockJSOptions  # noqa: E402


class Echo:
    """Each message back to its sender, as it came."""

    def client_connected(self, client):
        pass

    def process_message_raw(self, client, raw):
        client.send_frame(wire.frame_text(raw.encode("utf-8") if isinstance(raw, str) else raw))

    def client_disconnected(self, client):
        pass


class Close(Echo):
    def client_connected(self, client):
        client.close(3000, "Go away!")


def create_app() -> Flask:
    app = Flask(__name__)
    snorky = Snorky(app)
    delay = float(os.environ.get("SOCKJS_DISCONNECT_DELAY", "5"))

    def opts(**kw):
        return SockJSOptions(response_limit=4096, disconnect_delay=delay,
                             sockjs_url="/sockjs-client.js", rate_limit=0, **kw)

    snorky.mount_sockjs("/echo", Echo(), opts())
    snorky.mount_sockjs("/close", Close(), opts())
    snorky.mount_sockjs("/disabled_websocket_echo", Echo(), opts(websocket=False))
    snorky.mount_sockjs("/cookie_needed_echo", Echo(), opts(cookie_needed=True))

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app


app = create_app()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    from snorky_sync import serve
    serve(app, args.host, args.port)

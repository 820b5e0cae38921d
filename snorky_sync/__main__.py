"""``python -m snorky_sync serve``: the default app in the embedded gevent server."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything opens sockets: the Redis client must yield to the hub

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from .app import create_app
from .embedded import serve
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="snorky-sync",
        description="snorky_sync: real-time WebSocket services (Snorky 0.1's protocol) on gevent and Flask.",
        epilog="Every setting is also read from SNORKY_* environment variables (docs/deployment.md). "
               "In production run gunicorn -c gunicorn.conf.py wsgi:app.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the default server (single process, gevent)",
                       description="Serve the default app (/ws, /sockjs, /backend when SNORKY_API_KEY "
                                   "is set, /metrics, the demos at /) in the embedded gevent server.")
    p.add_argument("--host", help="address to listen on (SNORKY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (SNORKY_PORT, default 8002)")
    p.add_argument("--no-demos", action="store_true",
                   help="do not serve the demo pages at / (they are on by default here)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.no_demos:
        settings.demos = False
    elif "SNORKY_DEMOS" not in os.environ:  # on by default here, unless the setting says
        settings.demos = True
    if args.host:
        settings.host = args.host
    if args.port is not None:
        settings.port = args.port
    app = create_app(settings)
    print(f"Snorky running on http://{settings.host}:{settings.port}/ ...", flush=True)
    also = [(settings.backend_host, settings.backend_port)] if settings.backend_port else []
    if also and settings.api_key:
        print(f"Backend and /metrics only on http://{settings.backend_host}:{settings.backend_port}/",
              flush=True)
    serve(app, settings.host, settings.port, access_log=settings.access_log, also=also)
    return 0


if __name__ == "__main__":
    sys.exit(main())

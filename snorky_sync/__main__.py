"""``snorky-sync serve [module:app]`` (or ``python -m snorky_sync serve``): an app in the embedded gevent server."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything opens sockets or imports your app: its I/O must yield to the hub

import argparse
import errno
import importlib
import os
import sys
from typing import TYPE_CHECKING

from . import __version__
from .extras import install_command
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIApplication

# the top-level module a feature needs -> the extra of pyproject.toml that installs it
EXTRAS = {
    "redis": "redis", "hiredis": "redis",
    "sqlalchemy": "demos", "flask_sqlalchemy": "demos",
    "django": "django", "rest_framework": "django",
}


class CommandError(Exception):
    """A one-line error for the user; the command exits with status 1."""


def missing_module_text(exc: ImportError) -> str:
    """``No module named 'x'``, and the extra that installs it when there is one."""
    if "pip install" in str(exc):  # it says already (the Redis broker's own error)
        return str(exc)
    top = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(top)
    text = str(exc) if exc.name is None else f"No module named {exc.name!r}"
    if extra:
        return f"{text}: install it with {install_command(extra)}"
    return text


def load_app(spec: str) -> WSGIApplication:
    """``module:attribute`` (``module`` alone: its ``app``), importable from the current
    directory; an attribute ending in ``()`` is a factory called without arguments."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise CommandError(f"{spec!r} is not module:app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CommandError(f"cannot import {module_name!r} (No module named {exc.name!r}) "
                               f"from {os.getcwd()}: run the command in the directory that holds "
                               f"it, or set PYTHONPATH") from exc
        raise
    factory = attr.endswith("()")
    name = attr[:-2] if factory else attr
    try:
        app = getattr(module, name)
    except AttributeError:
        raise CommandError(f"module {module_name!r} has no attribute {name!r}") from None
    if factory:
        app = app()
    if not callable(app):
        raise CommandError(f"{spec} is a {type(app).__name__}, not a WSGI application")
    wsgi_app: WSGIApplication = app  # callable: taken to be one
    return wsgi_app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snorky-sync",
        description="snorky_sync: real-time WebSocket services (Snorky 0.1's protocol) on gevent and Flask.",
        epilog="Every setting is also read from SNORKY_* environment variables (docs/deployment.md). "
               "In production: gunicorn -c python:snorky_sync.gunicorn_conf module:app.")
    parser.add_argument("--version", action="version", version=f"snorky-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve an app (default: the built-in one) in one gevent process",
                       description="Serve APP (module:app, importable from the current directory) in the "
                                   "embedded gevent server, monkey-patched first.  Without APP: the "
                                   "default app (/ws, /sockjs, /backend when SNORKY_API_KEY is set, "
                                   "/metrics, the demos at /).  The event loop is watched: a call "
                                   "blocking it longer than SNORKY_MAX_BLOCKING_TIME is logged.")
    p.add_argument("app", nargs="?", metavar="APP",
                   help="module:app or module:create_app() (default: snorky_sync's own app)")
    p.add_argument("--host", help="address to listen on (SNORKY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (SNORKY_PORT, default 8002)")
    p.add_argument("--no-demos", action="store_true",
                   help="default app: do not serve the demo pages at / (they are on by default here)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _serve(args)
    except CommandError as exc:
        print(f"snorky-sync: error: {exc}", file=sys.stderr)
    except ImportError as exc:
        print(f"snorky-sync: error: {missing_module_text(exc)}", file=sys.stderr)
    return 1


def _serve(args: argparse.Namespace) -> int:
    from .embedded import _settings, serve

    if args.app:
        app = load_app(args.app)
        settings = _settings(app)  # its Snorky extension's, else the environment's
    else:
        from .app import create_app

        settings = Settings.from_env()
        if args.no_demos:
            settings.demos = False
        elif "SNORKY_DEMOS" not in os.environ:  # on by default here, unless the setting says
            settings.demos = True
        app = create_app(settings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    also = [(settings.backend_host, settings.backend_port)] if settings.backend_port else []
    try:
        # serve() prints the address it listens on once it does
        serve(app, host, port, access_log=settings.access_log, also=also)
    except OSError as exc:
        where = exc.filename or f"{host}:{port}"  # serve() names the address that failed
        setting = "--port or SNORKY_PORT" if where == f"{host}:{port}" else "SNORKY_BACKEND_PORT"
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(f"cannot listen on {where}: the address is already in use "
                               f"(another server?); choose another port with {setting}") from None
        if exc.errno == errno.EACCES:
            raise CommandError(f"cannot listen on {where}: permission denied "
                               f"(ports below 1024 need privileges); choose another with --port") from None
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

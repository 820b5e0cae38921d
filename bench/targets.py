"""The servers the benchmark drives, each a way to start it on a port."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import build, peer_env
from bench.procs import Server

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"

# the same limits for embedded and gunicorn: no per-connection rate limit, room
# for 10k idle sockets and raw handshake speed (no connection-rate limit), a
# queue long enough for a pipelining publisher
SNORKY_ENV = {"SNORKY_RATE_LIMIT": "0", "SNORKY_CONNECT_RATE": "0", "SNORKY_MAX_CONNECTIONS": "50000", "SNORKY_MAX_QUEUE_FRAMES": "100000",
              "SNORKY_HOST": "127.0.0.1", "SNORKY_LOG_LEVEL": "WARNING"}


@dataclass
class Target:
    name: str          # --only NAME
    label: str         # row title
    start: Callable[[int], Server]
    proto: str = "snorky"
    path: str = "/ws"


def _embedded(port: int) -> Server:
    return Server([sys.executable, "-m", "snorky_sync", "serve", "--host", "127.0.0.1", "--port", str(port)],
                  port, env=SNORKY_ENV, cwd=ROOT)


def _gunicorn(port: int) -> Server:
    env = {**SNORKY_ENV, "SNORKY_PORT": str(port), "SNORKY_WORKERS": "1", "SNORKY_WORKER_CLASS": "gevent",
           "SNORKY_WORKER_CONNECTIONS": "20000"}
    return Server([sys.executable, "-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"],
                  port, env=env, cwd=ROOT, forks=True)


def _trivial(port: int) -> Server:
    return Server([str(build.binary("trivial_server")), str(port)], port)


def _snorky01(port: int) -> Server:
    py = peer_env.ensure("snorky01")
    return Server([str(py), str(PEERS / "snorky01_server.py"), str(port)], port)


def _socketio(port: int) -> Server:
    py = peer_env.ensure("socketio")
    return Server([str(py), str(PEERS / "socketio_server.py"), str(port)], port)


TARGETS = [
    Target("embedded", "snorky_sync embedded", _embedded),
    Target("gunicorn", "snorky_sync gunicorn (1 gevent worker)", _gunicorn),
    Target("ceiling", "loadgen ceiling (trivial C server)", _trivial),
    Target("snorky01", "Snorky 0.1 (Tornado 6)", _snorky01),
    Target("socketio", "Flask-SocketIO (gevent)", _socketio, proto="socketio", path=SOCKETIO_PATH),
]

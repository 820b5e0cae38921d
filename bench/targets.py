"""The servers the benchmark drives, each a way to start it on a port."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import build, peer_env
from bench.procs import Server

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"

# the connection tokens of the Cursors workload (snorky_sync.auth.ConnectionTokens)
TOKEN_SECRET = "bench-connection-token-secret-0123456789"
# the same limits for embedded and gunicorn: no per-connection rate limit, room
# for 20k idle sockets (and gunicorn's worker_connections above 20k plus the
# warm-up) and raw handshake speed (no connection-rate limit), a queue long
# enough for a pipelining publisher, identities from ?token= for Cursors
SNORKY_ENV = {"SNORKY_RATE_LIMIT": "0", "SNORKY_CONNECT_RATE": "0", "SNORKY_MAX_CONNECTIONS": "50000", "SNORKY_MAX_QUEUE_FRAMES": "100000",
              "SNORKY_HOST": "127.0.0.1", "SNORKY_LOG_LEVEL": "WARNING", "SNORKY_TOKEN_SECRET": TOKEN_SECRET}


@dataclass
class Target:
    name: str          # --only NAME
    label: str         # row title
    start: Callable[[int], Server]
    proto: str = "snorky"
    path: str = "/ws"
    # how a Cursors client gets its identity: "signed" (a snorky_sync connection
    # token), "plain" (the identity itself as ?token=), None (no Cursors service)
    identity: str | None = None

    def tokens(self, n: int) -> list[str]:
        """One ?token= value per Cursors client, each a distinct identity."""
        names = [f"bench-user-{i}" for i in range(n)]
        if self.identity == "signed":
            from snorky_sync.auth import ConnectionTokens
            signer = ConnectionTokens(TOKEN_SECRET)
            return [signer.create(name) for name in names]
        return names


def _embedded(port: int) -> Server:
    return Server([sys.executable, "-m", "snorky_sync", "serve", "--host", "127.0.0.1", "--port", str(port)],
                  port, env=SNORKY_ENV, cwd=ROOT)


def _gunicorn(port: int) -> Server:
    env = {**SNORKY_ENV, "SNORKY_PORT": str(port), "SNORKY_WORKERS": "1", "SNORKY_WORKER_CLASS": "gevent",
           "SNORKY_WORKER_CONNECTIONS": "50000"}
    return Server([sys.executable, "-m", "gunicorn", "--no-control-socket", "-c", "gunicorn.conf.py", "wsgi:app"],
                  port, env=env, cwd=ROOT, forks=True)


def _trivial(port: int) -> Server:
    return Server([str(build.binary("trivial_server")), str(port)], port)


def _snorky01(port: int) -> Server:
    py = peer_env.ensure("snorky01")
    return Server([str(py), str(PEERS / "snorky01_server.py"), str(port)], port)


def _nodews(port: int) -> Server:
    node, prefix = peer_env.ensure_node()
    return Server([str(node), str(PEERS / "node_ws_server.mjs"), str(port), str(prefix)], port)


def _socketio(port: int) -> Server:
    py = peer_env.ensure("socketio")
    return Server([str(py), str(PEERS / "socketio_server.py"), str(port)], port)


TARGETS = [
    Target("embedded", "snorky_sync embedded", _embedded, identity="signed"),
    Target("gunicorn", "snorky_sync gunicorn (1 gevent worker)", _gunicorn, identity="signed"),
    Target("ceiling", "loadgen ceiling (trivial C server)", _trivial),
    Target("snorky01", "Snorky 0.1 (Tornado 6)", _snorky01, identity="plain"),
    Target("nodews", f"Node.js ws {peer_env.NODE_PACKAGES['ws']} (one process)", _nodews, identity="plain"),
    Target("socketio", "Flask-SocketIO (gevent)", _socketio, proto="socketio", path=SOCKETIO_PATH),
]

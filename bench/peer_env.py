"""The peers' own environments: a virtualenv (bench/.peers-venv) for the Python
peers and an npm prefix (bench/.peers-node) for the Node.js one, both kept
apart from snorky_sync's.

Snorky 0.1 pins tornado<5 and pulls streql (a C extension used only by its
HTTP backend handler, which the benchmark does not load), so it is installed
without dependencies, with Tornado 6 and the few modules its WebSocket path
imports.  Each group is installed on first use; a failure is reported as the
reason the peer's row is empty, never raised past the run.  The Node.js peer
needs ``node`` on PATH and the npm package ``ws`` (pinned in NODE_PACKAGES),
installed with ``npm install --prefix bench/.peers-node`` on first use.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".peers-venv"
NODE_PREFIX = Path(__file__).resolve().parent / ".peers-node"
NODE_PACKAGES = {"ws": "8.23.0"}
GROUPS = {
    "snorky01": {"check": "import snorky, tornado; assert int(tornado.version.split('.')[0]) >= 6",
                 "installs": [["--no-deps", "snorky==0.1.0a4"],
                              ["tornado>=6,<7", "python-dateutil", "requests", "funcsigs"]]},
    "socketio": {"check": "import flask_socketio, gevent, geventwebsocket",
                 "installs": [["flask-socketio", "gevent", "gevent-websocket"]]},
}


class PeerUnavailable(Exception):
    """The peer could not be installed or imported; the message says why."""


def python() -> Path:
    return VENV / "bin" / "python"


def _importable(check: str) -> str | None:
    """None when ``check`` runs in the peers' venv, else the last line of the error."""
    if not python().exists():
        return "no venv"
    proc = subprocess.run([str(python()), "-c", check], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["failed"])[-1]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure(group: str, log=_log) -> Path:
    """The venv's python with ``group`` installed (installing it if needed)."""
    spec = GROUPS[group]
    if _importable(spec["check"]) is None:
        return python()
    try:
        if not python().exists():
            log(f"creating {VENV}")
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=300)
        for args in spec["installs"]:
            log(f"pip install {' '.join(args)} (peers venv)")
            proc = subprocess.run([str(python()), "-m", "pip", "install", "-q", *args],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                err = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines()
                raise PeerUnavailable(f"pip install {' '.join(args)} failed: {(err or ['?'])[-1][:200]}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(f"installing {group}: {exc}") from exc
    why = _importable(spec["check"])
    if why is not None:
        raise PeerUnavailable(f"installed but does not import: {why[:200]}")
    return python()


def _node_missing() -> str | None:
    """None when every NODE_PACKAGES package is installed at its version, else what is not."""
    for name, version in NODE_PACKAGES.items():
        meta = NODE_PREFIX / "node_modules" / name / "package.json"
        try:
            found = json.loads(meta.read_text()).get("version")
        except (OSError, ValueError):
            return f"{name} not installed"
        if found != version:
            return f"{name} {found} installed, {version} wanted"
    return None


def ensure_node(log=_log) -> tuple[Path, Path]:
    """(node, the npm prefix holding NODE_PACKAGES), installing them if needed."""
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node not found on PATH")
    if _node_missing() is None:
        return Path(node), NODE_PREFIX
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable(f"npm not found on PATH ({_node_missing()})")
    specs = [f"{name}@{version}" for name, version in NODE_PACKAGES.items()]
    log(f"npm install --prefix {NODE_PREFIX} {' '.join(specs)}")
    try:
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund",
                               "--loglevel=error", *specs], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(f"npm install {' '.join(specs)}: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and "complete log" not in ln]
        errors = [ln for ln in lines if "ERR" in ln or "error" in ln] or lines or ["?"]
        raise PeerUnavailable(f"npm install {' '.join(specs)} failed: {' / '.join(errors[:2])[:200]}")
    why = _node_missing()
    if why is not None:
        raise PeerUnavailable(f"npm install {' '.join(specs)} ran but {why}")
    return Path(node), NODE_PREFIX

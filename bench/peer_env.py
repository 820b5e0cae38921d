"""The peers' own virtualenv (bench/.peers-venv), kept apart from snorky_sync's.

Snorky 0.1 pins tornado<5 and pulls streql (a C extension used only by its
HTTP backend handler, which the benchmark does not load), so it is installed
without dependencies, with Tornado 6 and the few modules its WebSocket path
imports.  Each group is installed on first use; a failure is reported as the
reason the peer's row is empty, never raised past the run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".peers-venv"
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

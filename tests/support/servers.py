"""Real servers in subprocesses on free ports: embedded, gunicorn (two worker classes)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-backend-key-0123456789"

WORKER_CLASSES = {
    "embedded": None,
    "gunicorn-gevent": "gevent",
    "gunicorn-geventwebsocket": "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server subprocess; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, mode: str = "embedded", app: str = "wsgi:app", env: dict | None = None,
                 workers: int = 1, cwd: Path | None = None, args: list[str] | None = None,
                 port: int | None = None):
        """``args``: run ``python ARGS`` instead (examples, the CLI); it must
        listen on ``port`` (also passed as SNORKY_PORT and PORT)."""
        self.mode = mode
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        full_env = dict(os.environ)
        full_env.update({"SNORKY_API_KEY": API_KEY, "SNORKY_PORT": str(self.port), "PORT": str(self.port),
                         "SNORKY_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
                         "SNORKY_SHUTDOWN_TIMEOUT": "1"})
        full_env.update(env or {})
        module, _, attr = app.partition(":")
        if args is not None:
            cmd = [sys.executable, *args]
        elif mode == "embedded":
            cmd = [sys.executable, "-c",
                   "import sys; sys.path.insert(0, '.');"
                   f"from snorky_sync import serve; import {module} as m;"
                   f"serve(m.{attr}, '127.0.0.1', {self.port})"]
        else:
            cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket",
                   "-k", WORKER_CLASSES[mode], "-w", str(workers),
                   "--worker-connections", "20000", "-b", f"127.0.0.1:{self.port}",
                   "--graceful-timeout", "5", app]
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"snorky-test-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(cwd or ROOT), env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # polling for the port to open, not synchronising on an event
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def post_backend(self, service: str, message, key: str | None = API_KEY, path="/backend"):
        headers = {"X-Backend-Key": key} if key is not None else {}
        return requests.post(self.url + path, json={"service": service, "message": message},
                             headers=headers, timeout=10)


def metric(srv, name: str) -> float:
    """One value of ``srv``'s /metrics (0.0 when absent)."""
    text = requests.get(srv.url + "/metrics", headers={"X-Backend-Key": API_KEY}, timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_metric(srv, name: str, at_least: float, timeout: float = 20.0) -> float:
    """Poll /metrics until ``name`` reaches ``at_least`` (a state only visible
    there); returns the value."""
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = metric(srv, name)
        if value >= at_least:
            return value
        time.sleep(0.05)  # polling the metrics endpoint: the counter is only visible there
    raise AssertionError(f"{name} = {value} on {srv.url}, expected >= {at_least}")

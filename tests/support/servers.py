"""Real servers in subprocesses on free ports: embedded, gunicorn (two worker classes)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import websocket

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-backend-key-0123456789"

WORKER_CLASSES = {
    "embedded": None,
    "gunicorn-gevent": "gevent",
    "gunicorn-geventwebsocket": "geventwebsocket.gunicorn.workers.GeventWebSocketWorker",
}


def free_port() -> int:
    """A port that was free a moment ago (bound, closed, returned: another process
    may take it before the caller binds it).  ServerProcess without ``port`` and
    ``args`` does not need one: its server binds port 0 and the port is read back."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def socket_ports(pid: int, state: str | None = None) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` holds (Linux: its socket
    fds matched with /proc/net/tcp), only those in ``state`` when given (a
    /proc/net/tcp state: "0A" is LISTEN)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                f = row.split()
                if f[9] in inodes and (state is None or f[3] == state):
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on."""
    return socket_ports(pid, "0A")


class ServerProcess:
    """A server subprocess; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, mode: str = "embedded", app: str = "wsgi:app", env: dict | None = None,
                 workers: int = 1, cwd: Path | None = None, args: list[str] | None = None,
                 port: int | None = None):
        """``args``: run ``python ARGS`` instead (examples, the CLI); it must
        listen on ``port`` (also passed as SNORKY_PORT and PORT).  Without ``args``
        and ``port`` the server binds port 0, and ``port`` is the one it got (held
        from the start, not guessed)."""
        self.mode = mode
        self._port_zero = port is None and args is None
        self.port = 0 if self._port_zero else (port or free_port())
        full_env = dict(os.environ)
        full_env.update({"SNORKY_API_KEY": API_KEY, "SNORKY_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
                         "SNORKY_SHUTDOWN_TIMEOUT": "1"})
        if not self._port_zero:
            full_env.update({"SNORKY_PORT": str(self.port), "PORT": str(self.port)})
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
        fd, log_name = tempfile.mkstemp(prefix="snorky-test-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(cwd or ROOT), env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            if self.port == 0:          # bound to port 0: which port did it get?
                ports = listening_ports(self.proc.pid)
                if len(ports) > 1:
                    raise RuntimeError(f"server listens on several ports {sorted(ports)}: pass port=")
                if not ports:
                    time.sleep(0.05)  # polling for the listener to appear, not synchronising on an event
                    continue
                self.port = ports.pop()
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

    def backend_call(self, service: str, command: str, **params):
        """The data of ``command`` of backend service ``service``, which must
        answer a response (a failed call fails the test with the answer)."""
        reply = self.post_backend(service, {"command": command, "params": params, "callId": 1})
        assert reply.status_code == 200, reply.text
        message = reply.json()["message"]
        assert message["type"] == "response", message
        return message["data"]


def serving(request, mode: str, app: str, env: dict | None = None, what: str = "server",
            log_tail: int = 4000) -> Iterator[ServerProcess]:
    """The body of a server fixture, ``yield from serving(request, request.param, APP)``:
    starts ``app`` under ``mode``, yields it, stops it, and prints the end of its
    log when a test of the session has failed."""
    srv = ServerProcess(mode, app=app, env=env)
    try:
        yield srv
    finally:
        srv.stop()
        if request.session.testsfailed:
            print(f"--- {what} log ({srv.mode}) ---\n{srv.log()[-log_tail:]}")


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


def sigterm_closes_every_client(srv: ServerProcess, clients, reason: bytes | None = None,
                                timeout: float = 15.0, exit_timeout: float = 20.0) -> None:
    """SIGTERM to ``srv``'s process: every client (a SnorkyTestClient) gets a close
    frame with code 1001 (and ``reason``, when given) within ``timeout`` s, and the
    process exits 0 within ``exit_timeout`` s."""
    srv.proc.send_signal(signal.SIGTERM)
    for c in clients:
        c.ws.settimeout(timeout)
        opcode, data = c.ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE, (opcode, data)
        assert int.from_bytes(data[:2], "big") == 1001, data
        if reason is not None:
            assert data[2:] == reason, data
    assert srv.proc.wait(exit_timeout) == 0

"""Processes for the benchmark: a pinned server on a free port, RSS and CPU from /proc."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

_CORES = sorted(os.sched_getaffinity(0))
# the first two cores this process may use (0 and 1 on the 2-core machine)
SERVER_CORE, GENERATOR_CORE = (_CORES + _CORES)[:2]


def two_cores() -> bool:
    return len(_CORES) >= 2


def pinned(core: int):
    """A ``preexec_fn`` that pins the child (and what it forks) to ``core``."""
    if not two_cores():
        return None
    return lambda: os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


class Server:
    """``cmd`` listening on 127.0.0.1:``port``, pinned to the server core, in
    its own session (stopped as a group).  ``pid`` is the process doing the
    work: the child for a forking server (gunicorn's one worker)."""

    def __init__(self, cmd: list[str], port: int, env: dict | None = None, cwd: Path | None = None,
                 forks: bool = False, timeout: float = 60.0):
        self.port = port
        self.log = tempfile.TemporaryFile()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=pinned(SERVER_CORE))
        try:
            self._wait_ready(timeout)
            self.pid = self._worker(timeout) if forks else self.proc.pid
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()[-600:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # polling for the port to open
        raise RuntimeError(f"server not listening after {timeout}s: {self.output()[-600:]}")

    def _worker(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            if kids:
                return kids[0]
            time.sleep(0.05)  # polling for the worker to be forked
        raise RuntimeError("no worker process")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self.log.close()

"""The tests' own PostgreSQL: ``initdb`` into a temporary directory and ``postgres``
on a free port of 127.0.0.1 (trust auth, user ``postgres``), started on first use
and stopped when the test process exits, like the redis-servers of tests/cluster.
Nothing uses the machine's own PostgreSQL, if it has one.

Needs the server binaries (Debian's ``postgresql`` package: /usr/lib/postgresql/*/bin;
scripts/test.sh installs it).  PostgreSQL refuses to run as root: under root the
server runs as the ``postgres`` user (the package creates it)."""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from support.servers import free_port


def bindir() -> Path:
    """The directory of ``initdb``/``postgres``/``psql``: PATH first, then the
    newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not versions:
        raise RuntimeError("PostgreSQL's initdb is not installed (scripts/test.sh installs Debian's postgresql)")
    return Path(versions[-1]).parent


class PostgresServer:
    """One PostgreSQL server; ``admin_dsn`` reaches its ``postgres`` database."""

    def __init__(self):
        self.bin = bindir()
        self.user = None            # run as this OS user (root cannot run PostgreSQL)
        if os.getuid() == 0:
            self.user = "postgres"
            pwd.getpwnam(self.user)   # KeyError: no postgres user to run the server as
        self.dir = Path(tempfile.mkdtemp(prefix="snorky-pg-"))
        self.data, self.sockets = self.dir / "data", self.dir / "sock"
        self.sockets.mkdir()
        self.log_path = self.dir / "postgres.log"
        if self.user:
            os.chmod(self.dir, 0o755)
            for path in (self.dir, self.sockets):
                shutil.chown(path, self.user, self.user)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        self.proc = None
        self.port = 0

    def _run(self, cmd):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, user=self.user)
        if out.returncode:
            raise RuntimeError(f"{cmd[0]} failed:\n{out.stdout}\n{out.stderr}")

    def start(self, attempts: int = 5) -> PostgresServer:
        """Start on a free port; on a lost race for the port (another process bound
        it between free_port() and the server's bind), again on another."""
        for _ in range(attempts):
            self.port = free_port()
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                     "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1",
                     "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                     "-c", "max_connections=200"],
                    stdout=log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True)
            if self._wait_ready():
                return self
            if "could not bind" not in self.log() and "could not create any TCP/IP sockets" not in self.log():
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}")

    def _wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)  # polling for the server to accept connections, not synchronising on an event
        self.stop()
        return False

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT)      # immediate shutdown: nothing to keep
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_server: PostgresServer | None = None


def server() -> PostgresServer:
    """The test process's PostgreSQL, started on first use, removed at exit."""
    global _server
    if _server is None:
        _server = PostgresServer()
        atexit.register(_server.remove)
        _server.start()
    return _server


@contextlib.contextmanager
def fresh_database(prefix: str):
    """Yields ``postgresql://postgres@127.0.0.1:<port>/<prefix><random>`` on the
    tests' PostgreSQL, a database created for the caller and dropped afterwards."""
    name = prefix + os.urandom(4).hex()
    pg = server()
    with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.url(name)
    finally:
        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psql() -> str:
    """The ``psql`` beside the server's binaries (else the one on PATH)."""
    beside = bindir() / "psql"
    found = str(beside) if beside.exists() else shutil.which("psql")
    if not found:
        raise RuntimeError("psql is not installed (Debian's postgresql package brings it)")
    return found

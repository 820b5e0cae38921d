"""A real redis-server on a free port, and several snorky_sync processes sharing it."""
import shutil
import socket
import subprocess
import time

import pytest
import requests

from support.servers import ServerProcess, free_port


class RedisServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        assert exe, "redis-server is required (scripts/test.sh installs it)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)  # polling for the port, not synchronising on an event
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def redis_server():
    r = RedisServer().start()
    yield r
    r.kill()


def wait_broker(srv, state="connected", timeout=20.0):
    """Wait until the server's /healthz shows the broker in ``state``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(srv.url + "/healthz", timeout=2).json()
            if last["broker"]["state"] == state:
                return last
        except requests.RequestException:
            pass
        time.sleep(0.05)  # polling the health endpoint: the state is only visible there
    raise AssertionError(f"broker of {srv.url} not {state}: {last}")


@pytest.fixture
def cluster(redis_server):
    """start(n) -> n embedded snorky_sync processes on one Redis."""
    servers = []

    def start(n=2, **env):
        for _ in range(n):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={"SNORKY_REDIS_URL": redis_server.url, **env})
            servers.append(srv)
            wait_broker(srv)
        return servers[-n:]

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def connect(cluster):
    """connect(server) -> a SnorkyTestClient; all closed before the servers stop."""
    from support.wsclient import SnorkyTestClient
    clients = []

    def _connect(srv, path="/ws"):
        c = SnorkyTestClient(srv.ws_url + path)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        c.close()

"""Logging out closes the connections of that browser's login session, on
every worker (issue #24 item 3: "session-cookie identities: logging out
disconnects that session's connections").

Two gunicorn workers on a real redis-server serve tests/cluster/logout_app.py
(identity from the Flask session cookie).  Alice's browser A has two pages
(WebSockets, one per worker) and a SockJS session; her browser B (another
login of the same user) and Bob's browser have pages on both workers.  A's
``POST /logout`` (``snorky.logout()``) closes A's three connections with 4003
``Logged out`` within a second, whichever worker answered it; B's and Bob's
stay open.
"""
from __future__ import annotations

import time

import pytest
import requests

from support.servers import ServerProcess
from support.sockjs_client import SockJSClient
from support.waiting import attempts
from support.wsclient import SnorkyTestClient, close_of

from .conftest import wait_broker

SECRET = "logout-test-secret-0123456789abcdef"


class Browser:
    """A browser's cookie jar, logged in as ``user``."""

    def __init__(self, srv: ServerProcess, user: str) -> None:
        self.srv = srv
        self.http = requests.Session()
        r = self.http.post(f"{srv.url}/login/{user}", timeout=10)
        assert r.status_code == 200, r.text
        self.cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())

    def page(self) -> SnorkyTestClient:
        c = SnorkyTestClient(f"{self.srv.ws_url}/ws", cookie=self.cookie, origin=self.srv.url)
        c.worker_pid = c.ok("worker", "pid")
        return c

    def pages_on_both_workers(self, clients: list) -> dict[int, SnorkyTestClient]:
        """One page on each worker (pages that landed on a worker twice are closed)."""
        found: dict[int, SnorkyTestClient] = {}
        for _ in attempts():
            c = self.page()
            if c.worker_pid in found:
                c.close()
                continue
            found[c.worker_pid] = c
            clients.append(c)
            if len(found) == 2:
                return found
        raise AssertionError("connections never reached the second worker")


@pytest.mark.parametrize("mode", ["gunicorn-gevent", "gunicorn-geventwebsocket"])
def test_logout_closes_that_sessions_connections_on_both_workers(redis_server, mode):
    srv = ServerProcess(mode, app="tests.cluster.logout_app:app", workers=2,
                        env={"SNORKY_REDIS_URL": redis_server.url, "TEST_SECRET": SECRET})
    clients: list = []
    try:
        wait_broker(srv)
        a, b, bob = Browser(srv, "alice"), Browser(srv, "alice"), Browser(srv, "bob")
        a_pages = a.pages_on_both_workers(clients)
        b_pages = b.pages_on_both_workers(clients)
        bob_pages = bob.pages_on_both_workers(clients)
        sockjs = SockJSClient(srv, "/sockjs", "xhr_streaming",
                              headers={"Cookie": a.cookie, "Origin": srv.url})
        clients.append(sockjs)
        assert sockjs.ok("worker", "whoami") == "alice"
        assert sockjs.ok("pubsub", "subscribe", {"channel": "c"}) is None

        r = a.http.post(f"{srv.url}/logout", timeout=10)
        assert r.status_code == 200, r.text
        assert 1 <= r.json()["closed"] <= 3  # those of the worker that answered

        deadline = time.monotonic() + 1.0  # every connection of A closed within 1 s
        for c in a_pages.values():
            assert close_of(c.ws, max(0.01, deadline - time.monotonic())) == (4003, "Logged out")
        sockjs.timeout = max(0.01, deadline - time.monotonic())
        assert sockjs.close_frame() == 'c[4003,"Logged out"]'
        # the same user's other browser, and another user, keep their connections on both workers
        for c in [*b_pages.values(), *bob_pages.values()]:
            assert c.ok("worker", "pid") == c.worker_pid
        # a request that does not touch the session is not made to vary by cookie
        assert "Cookie" not in a.http.get(f"{srv.url}/healthz", timeout=10).headers.get("Vary", "")
    finally:
        for c in clients:
            c.close()
        srv.stop()


"""Waiting for a state that is only visible by asking.

Most tests wait on an event (a frame arriving, a close, a process exiting).
Some states announce themselves to nobody outside the server: a count on
/healthz, a gauge on /metrics, a line in a log file, Redis or Sentinel's
view.  Those are polled, once here, with a timeout that fails the test
naming what never came and the last thing seen.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

__all__ = ["wait_for", "healthz", "wait_connections", "wait_redis", "attempts"]

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 10.0, what: str = "", *,
             interval: float = 0.05, ignore: tuple[type[BaseException], ...] = (),
             sleep: Callable[[float], Any] = time.sleep) -> T:
    """Call ``check()`` until it returns a true value, and return that value.

    An exception of a type in ``ignore`` counts as not yet (a server still
    starting, a Redis being failed over).  ``sleep``: ``gevent.sleep`` where the
    awaited thing is a greenlet of this (unpatched) process.  After ``timeout`` seconds:
    AssertionError naming ``what`` and the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}; last: {last!r}")
        sleep(interval)  # the polling interval of a state no event announces


def healthz(srv, prefix: str = "", timeout: float = 10.0) -> dict:
    """The server's /healthz answer (``srv.url``: a tests.support.servers.ServerProcess)."""
    return requests.get(f"{srv.url}{prefix}/healthz", timeout=timeout).json()


def wait_connections(srv, expected: int = 0, timeout: float = 30.0, prefix: str = "") -> int:
    """Until /healthz counts ``expected`` connections (a closed socket is
    counted until the server has seen it close)."""
    wait_for(lambda: healthz(srv, prefix)["connections"] == expected, timeout,
             f"{expected} connections on {srv.url}{prefix}")
    return expected


def wait_redis(port: int, timeout: float = 10.0) -> None:
    """Until a Redis (or Sentinel) on 127.0.0.1:``port`` answers PING."""
    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    wait_for(pong, timeout, f"redis on port {port}", ignore=(OSError,))


def attempts(timeout: float = 60.0):
    """Iterate until ``timeout`` seconds have passed: tries of something that
    succeeds by chance, such as a connection reaching a given gunicorn worker
    (the kernel spreads accepts; a worker still booting takes none, so a count
    of tries is not enough on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        yield

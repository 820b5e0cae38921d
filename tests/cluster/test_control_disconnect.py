"""control.disconnect across gunicorn workers (issue #24 item 2's test): two
gunicorn workers on a real redis-server, identity ``u42`` with two or more
connections on each; ``disconnect(u42, reconnect=False)`` posted to
``/backend`` closes them all with 4003 and the reason within 1 s, and leaves
the other identities' connections open.  ``info()`` before it answers both
workers' connection counts.

The app (tests/cluster/control_app.py, conftest's ``control_cluster``) is a
user's app mounting ``ControlService`` in its own backend registry (the
default app registers the same service: tests/unit/test_control.py).
"""
from __future__ import annotations

import time

from support.wsclient import close_of


def test_disconnect_closes_an_identity_on_both_workers(control_cluster):
    cluster = control_cluster()
    pages = cluster.spread("u42", 2)  # u42's pages, on both workers
    u42 = [c for group in pages.values() for c in group]
    bystanders = [c for group in cluster.spread("u7", 1).values() for c in group]

    # info(): both workers, whichever answers, with their own connections
    info = cluster.control("info")
    per_pid = {p["pid"]: (p["connections"], p["identities"]) for p in info["processes"]}
    assert per_pid == {pid: (sum(c.worker_pid == pid for c in cluster.clients), 2) for pid in pages}

    answer = cluster.control("disconnect", identity="u42", reconnect=False, reason="banned")
    assert 1 <= answer["closed"] <= len(u42)  # the answering worker's count

    deadline = time.monotonic() + 1.0  # the bound: every page closed within 1 s
    for c in u42:
        assert close_of(c.ws, max(0.01, deadline - time.monotonic())) == (4003, "banned")
    # the other identity's connections are untouched, on both workers
    for c in bystanders:
        assert c.ok("worker", "pid") == c.worker_pid

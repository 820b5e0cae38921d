"""One address loading pages in a loop cannot lock others out of DataSync (issue #21 item 8).

Before: the pending-subscription cap was process-wide and the Todos API
named nobody, so ~10,000 anonymous page loads made every other user's page
load fail (500) for up to 2 minutes.  Now every authorization names its
requester (the Todos API: the client's address) and each requester holds at
most ``SNORKY_MAX_PENDING_PER_REQUESTER`` pending subscriptions, its own
oldest evicted first.  Here, with small caps so that the flood is short,
under every serving mode: 127.0.0.2 loads the page three times the
process-wide cap; it is never refused, and a page loaded from 127.0.0.1
afterwards gets a token that subscribes; the flooder's oldest tokens were
the ones evicted, its latest still subscribe.  And with the API's
per-address rate (SNORKY_DEMO_API_RATE, on by default) such a flood is cut
short with 429 while another address is served.
"""
from __future__ import annotations

import http.client
import json
import os
import tempfile

from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient

CAP, PER_REQUESTER = 50, 10
SERVER_ENV = {"SNORKY_DEMOS": "1", "SNORKY_MAX_PENDING_SUBSCRIPTIONS": str(CAP),
              "SNORKY_DEMO_API_RATE": "0",  # the pending caps alone (the rate is tested below)
              "SNORKY_MAX_PENDING_PER_REQUESTER": str(PER_REQUESTER),
              "SNORKY_DEMO_DATABASE_URL": "sqlite:///" + os.path.join(
                  tempfile.gettempdir(), f"snorky_security_pending_{os.getpid()}.db")}


def load_page(port: int, source: str) -> tuple[int, dict]:
    """GET the Todos API (a page load) from ``source``: its status and JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/demos/todos/api")
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    return r.status, (json.loads(body) if r.status == 200 else {"body": body[:200]})


def acquire(c: SnorkyTestClient, token: str) -> dict:
    return c.call("datasync", "acquireSubscription", {"token": token})


def test_a_page_load_flood_from_one_address_locks_nobody_else_out(default_server):
    flood = []
    for _ in range(3 * CAP):
        status, page = load_page(default_server.port, "127.0.0.2")
        assert status == 200, page  # its own oldest go first: never refused
        flood.append(page["token"])
    status, page = load_page(default_server.port, "127.0.0.1")
    assert status == 200, page
    c = SnorkyTestClient(f"{default_server.ws_url}/ws")
    try:
        assert acquire(c, page["token"])["type"] == "response"
        assert acquire(c, flood[0])["message"] == "No such subscription"  # evicted
        assert acquire(c, flood[-1])["type"] == "response"  # its latest still hold
    finally:
        c.close()


def test_the_todos_api_is_rate_limited_per_address():
    env = {**SERVER_ENV, "SNORKY_DEMO_API_RATE": "5"}
    srv = ServerProcess("gunicorn-gevent", app="wsgi:app", env=env)
    try:
        statuses = [load_page(srv.port, "127.0.0.2")[0] for _ in range(40)]
        assert statuses[0] == 200 and statuses.count(429) >= 20, statuses
        assert load_page(srv.port, "127.0.0.1")[0] == 200  # another address is served
    finally:
        srv.stop()

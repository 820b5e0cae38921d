"""The Todos demo across a server restart: every change made after it shows.

The README promises "stop the server and start it again: the pages reconnect
and carry on".  The new process numbers its DataSync deltas (``seq``) from 1
again; a page that kept the old process's position dropped them while it
showed "reconnected" (issue #22 item 8).  Deltas now carry the process's
``epoch`` and snorky.js starts over when it changes.
"""
import json
import urllib.request

import pytest

READY = "body[data-ready='1']"
T = 15000  # ms: generous, the machine is shared


def api(base, method, path="", body=None):
    req = urllib.request.Request(base + "/demos/todos/api" + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def wait_list(page, expected):
    """Wait until the page shows ``expected``: [(title, completed), ...] in order."""
    page.wait_for_function(
        "want => JSON.stringify([...document.querySelectorAll('#todo-list li')].map("
        "li => [li.querySelector('label').textContent, li.classList.contains('completed')]))"
        " === JSON.stringify(want)", arg=expected, timeout=T)


def tokens(page):
    return page.evaluate("() => datasync.acquired.values()")


@pytest.fixture(params=["embedded", "gunicorn-gevent"])
def todos_server(request, tmp_path):
    """The default app with its demos on a fresh SQLite database;
    ``restart()``: the same port and database, a new process."""
    from support.servers import ServerProcess

    env = {"SNORKY_DEMOS": "1", "SNORKY_DEMO_DATABASE_URL": f"sqlite:///{tmp_path}/todos.db"}

    class Todos:
        def __init__(self):
            self.srv = ServerProcess(request.param, app="wsgi:app", env=env)
            self.url = self.srv.url

        def restart(self):
            port = self.srv.port
            self.srv.stop()
            self.srv = ServerProcess(request.param, app="wsgi:app", env=env, port=port)

    server = Todos()
    yield server
    server.srv.stop()


def test_todos_show_every_change_made_after_a_restart(todos_server, pages, screenshot):
    base = todos_server.url
    a, b = pages(2)
    for page in (a, b):
        page.goto(base + "/demos/todos")
    for page in (a, b):
        page.wait_for_selector(READY, timeout=T)
    # before the restart: enough deltas that the old process's seq is well past
    # what the new one sends next
    ids = [api(base, "POST", body={"title": f"old {i}"})["id"] for i in range(6)]
    for i in ids[:3]:
        api(base, "PATCH", f"/{i}", {"completed": True})
    api(base, "DELETE", f"/{ids[5]}")
    before = [(f"old {i}", i < 3) for i in range(5)]
    for page in (a, b):
        wait_list(page, before)
    assert page.evaluate("() => datasync.lastSeq") >= 10
    old = {page: tokens(page) for page in (a, b)}

    todos_server.restart()  # same port, same database

    for page in (a, b):
        page.wait_for_selector("#status[data-state='connected']:has-text('reconnected')", timeout=30000)
        # the old token is gone with the old process: the page loaded the list
        # again and acquired a new subscription (only then is it listening)
        page.wait_for_function(
            "old => document.body.dataset.ready === '1' && datasync.acquired.values().length === 1"
            " && !old.includes(datasync.acquired.values()[0])", arg=old[page], timeout=30000)
        wait_list(page, before)

    # after the restart, through the API: inserts, updates, a delete
    new = [api(base, "POST", body={"title": f"new {i}"})["id"] for i in range(3)]
    api(base, "PATCH", f"/{new[0]}", {"completed": True})
    api(base, "PATCH", f"/{ids[0]}", {"completed": False, "title": "old 0 again"})
    api(base, "DELETE", f"/{ids[4]}")
    after = [("old 0 again", False), ("old 1", True), ("old 2", True), ("old 3", False),
             ("new 0", True), ("new 1", False), ("new 2", False)]
    for page in (a, b):
        wait_list(page, after)
    # and from a page: the other page shows it
    a.fill("#new-todo", "typed after the restart")
    a.press("#new-todo", "Enter")
    wait_list(b, after + [("typed after the restart", False)])
    assert b.text_content("#left") == "5"
    screenshot(a, "a")
    screenshot(b, "b")

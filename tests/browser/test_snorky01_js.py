"""snorky.js in real headless Chromium running a page written the Snorky.js 0.1 way.

The page (snorky01_page.html, ES5, 0.1's API only) is put on the test
server's origin and loads /snorky_sync/static/snorky.js from it: a
Snorky.Class subclass of RPCService, a PubSub round trip between two pages,
Chat, Cursors' Document / OwnCursor / ForeignCursor, and a
CollectionDeltaProcessor keeping a custom collection (the <li>s of a list) in
sync with deltas published through the backend.
"""
from pathlib import Path

import pytest


PAGE = Path(__file__).resolve().parent / "snorky01_page.html"
T = 15000  # ms: generous, the machine is shared


@pytest.fixture(scope="module")
def server(testapp_server):
    return testapp_server


@pytest.fixture
def open_page(server, pages):
    """open_page(user) -> a page of snorky01_page.html connected as ``user``."""
    def _open(user):
        (page,) = pages(1)
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        # a document the server really served gives the page its origin (and
        # Chromium's local-network checks their due); then the fixture's HTML
        page.goto(server.url + "/healthz")
        page.set_content(PAGE.read_text())
        assert page.evaluate("u => start(u)", user) is True
        assert errors == []
        return page
    return _open


def texts(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def test_a_snorky_class_subclass_of_rpcservice(open_page):
    page = open_page("calc-user")
    assert page.evaluate("() => snorky.services.calc.addAndShow({a: 2, b: 3})") == 5
    page.wait_for_selector("#log li.sum:has-text('sum 5')", timeout=T)
    result = page.evaluate("""() => {
        var calc = snorky.services.calc;
        var refused;
        try { Calculator.addRPCMethods(["add"]); } catch (e) { refused = e.message; }
        return calc.divide({a: 1, b: 0}).then(function () { return "no error"; }, function (err) {
            return [err.message, refused, calc instanceof Snorky.RPCService, calc.results, calc.nextCallId];
        });
    }""")
    assert result == ["Division by zero", 'Method "add" already exists in the class. Refusing to overwrite it.',
                      True, [5], 2]


def test_pubsub_round_trip_between_two_pages(open_page):
    a, b = open_page("pub-a"), open_page("pub-b")
    assert b.evaluate("() => snorky.services.pubsub.subscribe({channel: 'news01'})") is None
    assert a.evaluate("() => snorky.services.pubsub.publish({channel: 'news01', message: 'hello from A'})") is None
    b.wait_for_selector("#log li.published:has-text('published hello from A')", timeout=T)
    assert texts(a, "#log li.published") == []  # A did not subscribe


def test_chat_presence_and_messages(open_page):
    alice = open_page("alice01")
    members = alice.evaluate("() => snorky.services.chat.join({channel: 'room01'})"
                             ".then(function (r) { return r.members; })")
    assert members == [{"user": "alice01"}]
    bob = open_page("bob01")
    members = bob.evaluate("() => snorky.services.chat.join({channel: 'room01'})"
                           ".then(function (r) { return r.members.map(function (m) { return m.user; }).sort(); })")
    assert members == ["alice01", "bob01"]
    alice.wait_for_selector("#log li.presence:has-text('bob01 joined')", timeout=T)
    bob.evaluate("() => snorky.services.chat.send({channel: 'room01', body: 'hi alice'})")
    for page in (alice, bob):
        page.wait_for_selector("#log li.chat:has-text('bob01: hi alice')", timeout=T)
    assert bob.evaluate("() => snorky.services.chat.leave({channel: 'room01'})") is None
    alice.wait_for_selector("#log li.presence:has-text('bob01 left')", timeout=T)


def test_cursors_document_and_own_cursor(open_page):
    ann, ben = open_page("ann02"), open_page("ben02")
    assert ann.evaluate("() => joinCursors('sheet02')") is True
    created = ann.evaluate("""() => {
        var made = cursorDocument.createCursor({position: 1, status: "editing"});
        ownCursor = made[0];
        var before = [ownCursor instanceof Snorky.Cursors.OwnCursor, ownCursor.isMine, ownCursor.isSynchronized()];
        return made[1].then(function (handle) {
            return before.concat([ownCursor.isSynchronized(), handle === ownCursor.publicHandle]);
        });
    }""")
    assert created == [True, True, False, True, True]
    handle = ann.evaluate("() => ownCursor.publicHandle")
    assert ben.evaluate("() => joinCursors('sheet02')") is True
    sel = f"#cursors li[data-handle='{handle}']"
    ben.wait_for_selector(f"{sel}[data-position='1'][data-foreign='true']", timeout=T)
    assert ben.text_content(sel) == "ann02 at 1"
    ann.evaluate("() => ownCursor.update({position: 13})")
    ben.wait_for_selector(f"{sel}[data-position='13']", timeout=T)
    assert ann.evaluate("() => ownCursor.remove().then(function () { return ownCursor.isSynchronized(); })") is True
    ben.wait_for_selector(sel, state="detached", timeout=T)


def test_datasync_delta_processor_on_a_custom_collection(server, open_page, screenshot):
    page = open_page("todo02")
    token = server.backend_call("datasync_backend", "authorizeSubscription",
                                items=[{"dealer": "todosByList", "query": "browser01"}])
    assert page.evaluate("t => syncTodos(t)", token) is None
    server.backend_call("datasync_backend", "publishDeltas", deltas=[
        {"type": "insert", "model": "Todo", "data": {"id": 1, "list": "browser01", "title": "buy milk"}},
        {"type": "insert", "model": "Todo", "data": {"id": 2, "list": "browser01", "title": "write docs"}},
        {"type": "insert", "model": "Todo", "data": {"id": 3, "list": "elsewhere", "title": "not mine"}},
    ])
    page.wait_for_function("() => document.querySelectorAll('#todos li').length === 2", timeout=T)
    server.backend_call("datasync_backend", "publishDeltas", deltas=[
        {"type": "update", "model": "Todo", "oldData": {"id": 2, "list": "browser01", "title": "write docs"},
         "newData": {"id": 2, "list": "browser01", "title": "write better docs"}},
        {"type": "delete", "model": "Todo", "data": {"id": 1, "list": "browser01", "title": "buy milk"}},
    ])
    page.wait_for_function("() => document.querySelectorAll('#todos li').length === 1", timeout=T)
    assert texts(page, "#todos li") == ["write better docs"]
    assert page.get_attribute("#todos li", "data-id") == "2"
    screenshot(page, "todos")

"""The demos in real headless Chromium: two pages see each other live.

Each test fails if a connector of snorky.js, the delta processor or the demo
wiring breaks; each saves screenshots under test-artifacts/.
"""
READY = "body[data-ready='1']"
T = 15000  # ms: generous, the machine is shared


def texts(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def wait_texts(page, selector, expected):
    """Wait until the texts of ``selector`` equal ``expected`` (a list)."""
    page.wait_for_function(
        "([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)].map(e => e.textContent))"
        " === JSON.stringify(want)", arg=[selector, expected], timeout=T)


def test_index_links_every_demo(demo_server, pages, screenshot):
    (page,) = pages(1)
    page.goto(demo_server.url + "/")
    links = page.eval_on_selector_all("#demos a", "els => els.map(e => e.getAttribute('href'))")
    assert links == ["/demos/pubsub", "/demos/chat", "/demos/cursors", "/demos/todos"]
    # the client as an ES module, and as a plain script defining window.Snorky
    kinds = page.evaluate("""async () => {
        const m = await import('/static/snorky.mjs');
        const s = document.createElement('script');
        s.src = '/static/snorky.js';
        await new Promise((ok, fail) => { s.onload = ok; s.onerror = fail; document.head.append(s); });
        return [typeof m.default.DataSync.ArrayCollection, m.Snorky === m.default,
                typeof window.Snorky.PubSub];
    }""")
    assert kinds == ["function", True, "function"]
    screenshot(page, "index")


def test_pubsub_two_tabs_publish_to_each_other(open_demo, screenshot):
    a, b = open_demo("/demos/pubsub", "/demos/pubsub")
    a.fill("#text", "hello from A")
    a.click("#send")
    b.fill("#text", "hello from B")
    b.press("#text", "Enter")
    for page in (a, b):
        page.wait_for_function("() => document.querySelectorAll('#log li').length >= 2", timeout=T)
        assert sorted(texts(page, "#log li")) == ["hello from A", "hello from B"]
    screenshot(a, "tab-a")
    screenshot(b, "tab-b")


def test_chat_two_people_see_presence_and_messages(open_demo, screenshot):
    (alice,) = open_demo("/demos/chat?name=alice")
    wait_texts(alice, "#members li", ["alice"])
    (bob,) = open_demo("/demos/chat?name=bob")
    wait_texts(bob, "#members li", ["alice", "bob"])
    wait_texts(alice, "#members li", ["alice", "bob"])
    alice.wait_for_selector("#messages li.presence:has-text('bob joined')", timeout=T)

    bob.fill("#text", "hi alice")
    bob.press("#text", "Enter")
    alice.wait_for_selector("#messages li.message:has-text('bob: hi alice')", timeout=T)
    bob.wait_for_selector("#messages li.message:has-text('bob: hi alice')", timeout=T)
    screenshot(alice, "alice")
    screenshot(bob, "bob")

    bob.close()  # bob's only connection goes: alice sees him leave
    alice.wait_for_selector("#messages li.presence:has-text('bob left')", timeout=T)
    wait_texts(alice, "#members li", ["alice"])
    screenshot(alice, "alice-after-bob-left")


def test_cursors_follow_the_other_pointer(open_demo, screenshot):
    alice, bob = open_demo("/demos/cursors?name=alice", "/demos/cursors?name=bob")
    box = alice.locator("#board").bounding_box()
    alice.mouse.move(box["x"] + 50, box["y"] + 60)
    alice.mouse.move(box["x"] + 120, box["y"] + 80)
    bob.wait_for_selector(".cursor[data-owner='alice'][data-x='120'][data-y='80']", timeout=T)
    alice.mouse.move(box["x"] + 300, box["y"] + 200, steps=5)
    bob.wait_for_selector(".cursor[data-owner='alice'][data-x='300'][data-y='200']", timeout=T)
    assert bob.text_content("#count") == "1"
    screenshot(bob, "bob-sees-alice")
    alice.mouse.move(box["x"] + box["width"] + 40, box["y"] + 10)  # leaving the board removes it
    bob.wait_for_selector(".cursor[data-owner='alice']", state="detached", timeout=T)


def todo_titles(page):
    return texts(page, "#todo-list li label")


def test_todos_follow_on_the_other_page(open_demo, screenshot):
    a, b = open_demo("/demos/todos", "/demos/todos")
    a.fill("#new-todo", "buy milk")
    a.press("#new-todo", "Enter")
    a.fill("#new-todo", "write docs")
    a.press("#new-todo", "Enter")
    wait_texts(b, "#todo-list li label", ["buy milk", "write docs"])
    assert b.text_content("#left") == "2"

    a.check("#todo-list li:has-text('buy milk') .toggle")
    b.wait_for_selector("#todo-list li.completed:has-text('buy milk')", timeout=T)
    assert b.text_content("#left") == "1"

    a.dblclick("#todo-list li:has-text('write docs') label")
    a.fill("#todo-list .edit", "write better docs")
    a.press("#todo-list .edit", "Enter")
    wait_texts(b, "#todo-list li label", ["buy milk", "write better docs"])
    screenshot(b, "b-after-edit")

    a.click("#todo-list li:has-text('buy milk') .destroy")
    wait_texts(b, "#todo-list li label", ["write better docs"])
    # a page opened now starts from the database
    (c,) = open_demo("/demos/todos")
    assert todo_titles(c) == ["write better docs"]
    screenshot(a, "a")
    screenshot(b, "b")


def test_pages_survive_a_server_restart(demo_server, open_demo, screenshot):
    """Pages reconnect on their own and resume: pubsub subscription, chat
    presence, the todo list's DataSync subscription."""
    p1, p2, chat_a, chat_b, todo_a, todo_b = open_demo(
        "/demos/pubsub", "/demos/pubsub", "/demos/chat?name=ann", "/demos/chat?name=ben",
        "/demos/todos", "/demos/todos")
    wait_texts(chat_a, "#members li", ["ann", "ben"])

    demo_server.restart()

    for page in (p1, p2, chat_a, chat_b, todo_a, todo_b):
        page.wait_for_selector("#status[data-state='connected']:has-text('reconnected')", timeout=30000)
    todo_b.wait_for_selector(READY, timeout=T)  # loaded again with a new token
    p1.fill("#text", "after the restart")
    p1.press("#text", "Enter")
    p2.wait_for_selector("#log li:has-text('after the restart')", timeout=T)
    wait_texts(chat_a, "#members li", ["ann", "ben"])
    chat_b.fill("#text", "still here")
    chat_b.press("#text", "Enter")
    chat_a.wait_for_selector("#messages li.message:has-text('ben: still here')", timeout=T)
    todo_a.fill("#new-todo", "made after restart")
    todo_a.press("#new-todo", "Enter")
    wait_texts(todo_b, "#todo-list li label", ["made after restart"])
    for name, page in (("pubsub", p2), ("chat", chat_a), ("todos", todo_b)):
        screenshot(page, name)

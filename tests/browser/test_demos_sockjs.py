"""The demos over SockJS: sockjs-client (npm, tests/sockjs/node_modules) added to
the demo pages, which then connect on the transport named by ?transport=."""
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[1] / "sockjs" / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
if not CLIENT.exists():
    pytest.skip("sockjs-client is not installed (scripts/test.sh runs npm install in tests/sockjs)",
                allow_module_level=True)

T = 20000


@pytest.fixture
def sockjs_pages(pages):
    def _pages(n):
        made = pages(n)
        for page in made:
            page.add_init_script(script=CLIENT.read_text())
        return made
    return _pages


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling", "eventsource", "jsonp-polling"])
def test_pubsub_and_chat_demos_over_sockjs(demo_server, sockjs_pages, transport, screenshot):
    a, b, alice, bob = sockjs_pages(4)
    for page, path in ((a, "/demos/pubsub"), (b, "/demos/pubsub"),
                       (alice, "/demos/chat?name=alice"), (bob, "/demos/chat?name=bob")):
        sep = "&" if "?" in path else "?"
        page.goto(f"{demo_server.url}{path}{sep}transport={transport}")
    for page in (a, b, alice, bob):
        page.wait_for_selector("body[data-ready='1']", timeout=T)
    # every page really is on SockJS, on that transport
    for page in (a, b, alice, bob):
        page.wait_for_function("window.snorky.isConnected", timeout=T)
        assert page.evaluate("window.snorky.transport") == "sockjs:" + transport
    a.fill("#text", f"hello over {transport}")
    a.click("#send")
    b.wait_for_selector(f"#log li:has-text('hello over {transport}')", timeout=T)

    bob.wait_for_selector("#members li:has-text('alice')", timeout=T)
    alice.fill("#text", "hi bob")
    alice.press("#text", "Enter")
    bob.wait_for_selector("#messages li.message:has-text('alice: hi bob')", timeout=T)
    screenshot(b, transport)

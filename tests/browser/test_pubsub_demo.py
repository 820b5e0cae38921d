"""The demo page at / in two real browser tabs: what one publishes, both see."""
from support.servers import ServerProcess


def test_two_tabs_publish_to_each_other(browser, screenshot):
    srv = ServerProcess("embedded", app="wsgi:app")
    try:
        ctx = browser.new_context()
        a, b = ctx.new_page(), ctx.new_page()
        for page in (a, b):
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
        a.fill("#text", "hello from A")
        a.click("#send")
        b.fill("#text", "hello from B")
        b.press("#text", "Enter")
        for page in (a, b):
            page.wait_for_function(
                "() => document.querySelectorAll('#log li').length >= 2", timeout=15000)
            items = page.eval_on_selector_all("#log li", "els => els.map(e => e.textContent)")
            assert sorted(items) == ["hello from A", "hello from B"]
        screenshot(a, "tab-a")
        screenshot(b, "tab-b")
        ctx.close()
    finally:
        srv.stop()

"""Headless Debian Chromium driven by Playwright; screenshots go to test-artifacts/."""
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser(playwright_instance):
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield b
    b.close()


@pytest.fixture
def screenshot(request):
    """screenshot(page, label): save a PNG named after the test."""
    ARTIFACTS.mkdir(exist_ok=True)

    def _shot(page, label):
        path = ARTIFACTS / f"{request.node.name}-{label}.png"
        page.screenshot(path=str(path))
        return path
    return _shot


@pytest.fixture
def demo_server(tmp_path):
    """The default app with its demos (wsgi:app, SNORKY_DEMOS=1) and a fresh SQLite database.

    ``demo_server.restart()`` stops it and starts a new process on the same port.
    """
    from support.servers import ServerProcess

    env = {"SNORKY_DEMOS": "1", "SNORKY_DEMO_DATABASE_URL": f"sqlite:///{tmp_path}/todos.db"}

    class Demo:
        def __init__(self):
            self.srv = ServerProcess("embedded", app="wsgi:app", env=env)
            self.url = self.srv.url

        def restart(self):
            port = self.srv.port
            self.srv.stop()
            self.srv = ServerProcess("embedded", app="wsgi:app", env=env, port=port)

    demo = Demo()
    yield demo
    demo.srv.stop()


@pytest.fixture
def pages(browser):
    """pages(n) -> n pages, each in its own browser context (own session storage)."""
    contexts = []

    def _pages(n):
        made = []
        for _ in range(n):
            ctx = browser.new_context()
            contexts.append(ctx)
            made.append(ctx.new_page())
        return made
    yield _pages
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def open_demo(demo_server, pages):
    """open_demo(*paths) -> one ready page per path of the demo server (all
    opened, then each waited for until its demo says ``data-ready``)."""
    def _open(*paths):
        made = pages(len(paths))
        for page, path in zip(made, paths):
            page.goto(demo_server.url + path)
        for page in made:
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
        return made
    return _open

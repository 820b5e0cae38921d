import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def playwright_instance():
    """One Playwright for the whole run (a second sync_playwright() in the same
    process fails while the first is alive): tests/browser and tests/sockjs
    launch their Chromiums from it."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def testapp_server():
    """The integration test app (tests/integration/testapp.py) on the embedded
    server, one per test module."""
    from support.servers import ServerProcess

    srv = ServerProcess("embedded", app="tests.integration.testapp:app")
    yield srv
    srv.stop()

"""Headless Debian Chromium driven by Playwright; screenshots go to test-artifacts/."""
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
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

"""Snorky 0.1's PubSub backend demo, ported (examples/snorky01/pubsub_backend_demo/),
in headless Chromium: two open pages see what publish.py announces."""
import subprocess
import sys

from support.servers import API_KEY, ROOT, ServerProcess


def test_announcements_reach_every_open_page(pages, screenshot):
    srv = ServerProcess(args=["examples/snorky01/pubsub_backend_demo/server.py"])
    try:
        made = pages(2)
        errors = []
        for page in made:
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(srv.url + "/")
        for page in made:
            page.wait_for_function("document.getElementById('connecting').textContent === 'Subscribed'",
                                   timeout=15000)
        for text in ("Server restarts at 5", "Back at 5:05"):
            out = subprocess.run(
                [sys.executable, "examples/snorky01/pubsub_backend_demo/publish.py", text],
                cwd=ROOT, timeout=60, capture_output=True, text=True,
                env={"SNORKY_BACKEND_URL": srv.url + "/backend", "SNORKY_API_KEY": API_KEY,
                     "PATH": "/usr/bin:/bin"})
            assert out.returncode == 0, out.stdout + out.stderr
        for page in made:
            page.wait_for_function("document.querySelectorAll('#announcements li').length === 2",
                                   timeout=15000)
            assert page.eval_on_selector_all("#announcements li", "els => els.map(e => e.textContent)") == [
                "Server restarts at 5", "Back at 5:05"]
        screenshot(made[0], "announcements")
        assert errors == []
    finally:
        srv.stop()

"""Runs the JavaScript client's own tests (``node --test tests/js/``) inside the suite.

The node tests start a real snorky_sync server themselves
(tests/js/helpers.mjs); this wrapper only makes them part of the one test
command and shows their TAP output when they fail.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def node_command() -> list[str]:
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test.sh installs it)"
    for flags in ([], ["--experimental-websocket"]):
        probe = subprocess.run([node, *flags, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                               capture_output=True)
        if probe.returncode == 0:
            return [node, *flags]
    return [node]  # an old Node: helpers.mjs uses tests/js/node_modules/ws (scripts/test.sh installs it)


def failures(tap: str) -> str:
    """The TAP lines of every failed or cancelled test, with what follows each."""
    lines = tap.splitlines()
    picked = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("not ok"):
            picked += lines[max(0, i - 2):i + 30] + ["..."]
    return "\n".join(picked) + "\n"


@pytest.mark.timeout(320)  # above the runner's own: a hung test is named in its output
def test_snorky_js_under_node_test_runner():
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    assert len(files) >= 3
    env = dict(os.environ, SNORKY_PYTHON=sys.executable)
    proc = subprocess.run([*node_command(), "--test", "--test-reporter=tap",
                           # files in parallel: most of their time is a server starting;
                           # a test (a file too counts as one) that hangs fails alone, named, after 150 s
                           "--test-concurrency=3", "--test-timeout=150000", *files], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, failures(out) + out[-4000:]
    assert "# fail 0" in out and "# pass " in out, out[-4000:]

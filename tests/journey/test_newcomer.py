"""The newcomer's journey, from a built wheel (not the repository's editable
install) into a fresh venv: an app of their own with a service of its own,
served by the gunicorn config the package ships with two workers and a real
redis-server, two Chromium pages on different workers seeing each other's
votes; then SIGTERM and a restart, both pages carrying on.

Everything the newcomer would copy comes from docs/, so this breaks when the
docs do: the install commands (docs/getting-started.md; docs/deployment.md and
docs/scaling.md name the same wheel), the service and its app
(docs/writing-a-service.md's ``pollapp.py``), the two commands that serve it
(the ``sh`` block below it), and the page's script (docs/javascript.md's poll,
with snorky.js where that page says a mounted app serves it).  What the test
adds is marked test-only: a command that says which worker (and which
installed snorky_sync) holds a connection, and a route that serves the page.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from browser.conftest import CHROMIUM, FLAGS
from cluster.conftest import RedisServer
from docs.test_snippets import SNIPPETS

from support.servers import ROOT, ServerProcess, free_port

T = 20000  # ms: every wait in the pages
SERVICE_PAGE = "docs/writing-a-service.md"
EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"  # ServerProcess runs its python: become the venv's


def _run(cmd, **kwargs):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, **kwargs)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def install_commands(version: str) -> list[list[str]]:
    """docs/getting-started.md's commands that install snorky_sync into your app's
    venv; docs/deployment.md and docs/scaling.md install the same wheel."""
    [block] = [s for s in SNIPPETS if s.page == "docs/getting-started.md" and s.lang == "sh"
               and "pip wheel" in s.code]
    commands = [shlex.split(line) for line in block.code.splitlines()]
    install = f'pip install "dist/snorky_sync-{version}-py3-none-any.whl[redis]"'
    assert [shlex.join(c) for c in commands] == [
        "pip wheel --no-deps -w dist path/to/snorky_sync", shlex.join(shlex.split(install))], block.code
    for page in ("docs/deployment.md", "docs/scaling.md"):
        assert install in (ROOT / page).read_text(), page
    return commands


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv, and the wheel built from this tree installed into it, as the docs say."""
    tmp = tmp_path_factory.mktemp("newcomer")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    commands = install_commands(version)
    # the clone: a copy, since pip's in-tree build would leave build/ and egg-info in the repository
    clone = tmp / "clone"
    shutil.copytree(ROOT / "snorky_sync", clone / "snorky_sync", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, clone / name)
    started = time.monotonic()
    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)])  # getting-started.md: python3 -m venv .venv
    for argv in commands:  # with the venv's pip, in the app's directory
        argv = [str(clone) if word == "path/to/snorky_sync" else word for word in argv]
        _run([str(env_dir / "bin" / argv[0]), *argv[1:], "-q", "--disable-pip-version-check"], cwd=tmp)
    print(f"\nnewcomer venv: created, wheel built and installed in {time.monotonic() - started:.1f} s")
    assert _run([str(env_dir / "bin" / "snorky-sync"), "--version"]).strip() == f"snorky-sync {version}"
    assert (env_dir / "bin" / "gunicorn").exists()  # snorky_sync depends on gunicorn[gevent]
    return env_dir


# test-only, around the page's app: which worker (and which snorky_sync) holds a connection
WHERE = '''
import os as _os

import snorky_sync as _snorky_sync
from snorky_sync import RPCService as _RPCService, rpc_command as _rpc_command

class _Where(_RPCService):   # test-only
    @_rpc_command
    def where(self, req):
        return {"pid": _os.getpid(), "snorky_sync": _snorky_sync.__file__}
'''
PAGE_ROUTE = '''

@app.get("/")   # test-only: the page
def _page():
    with open(_os.path.join(_os.path.dirname(__file__), "poll.html")) as f:
        return f.read()
'''
# the page: its own two functions that docs/javascript.md's script calls, the script
# unchanged, then (test-only) the worker it reached and how its connections closed
PAGE = '''<!doctype html>
<html><body>
<p id="votes"></p>
<script src="{snorky_js}"></script>
<script>
window.shows = 0;
window.shown = {{}};
function showVotes(votes) {{
  window.shows += 1;
  window.shown = Object.assign({{}}, votes);
  document.getElementById("votes").textContent = JSON.stringify(votes);
}}
function onVoteClicked(fn) {{ window.clickVote = fn; }}
</script>
<script>
{script}
</script>
<script>
class Where extends Snorky.RPCService {{}}   // test-only
Where.addRPCMethods(["where"]);
live.services.worker = new Where("worker", live);
window.closes = [];
live.disconnected.add(function (info) {{ window.closes.push(info.code); }});
</script>
</body></html>
'''


def write_app(app_dir):
    """docs/writing-a-service.md's pollapp.py and docs/javascript.md's poll page in ``app_dir``."""
    [app] = [s for s in SNIPPETS if s.page == SERVICE_PAGE and s.code.startswith("# pollapp.py\n")]
    mounted = 'ServiceRegistry([PollService("poll")])'
    assert mounted in app.code
    code = app.code.replace(mounted, 'ServiceRegistry([PollService("poll"), _Where("worker")])')
    (app_dir / "pollapp.py").write_text(WHERE + code + PAGE_ROUTE)
    [script] = [s for s in SNIPPETS if s.page == "docs/javascript.md" and s.options.get("page") == "poll"]
    snorky_js = "/snorky_sync/static/snorky.js"
    assert f"an app you mount snorky_sync\ninto serves it at `{snorky_js}`" in (ROOT / "docs/javascript.md").read_text()
    (app_dir / "poll.html").write_text(PAGE.format(snorky_js=snorky_js, script=script.code))


def docs_commands() -> dict[str, tuple[dict, list[str]]]:
    """The page's commands that serve pollapp.py: {"python": (env, argv), "gunicorn": ...}."""
    [block] = [s for s in SNIPPETS if s.page == SERVICE_PAGE and s.lang == "sh" and "pollapp:app" in s.code]
    commands = {}
    for line in block.code.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        env = {}
        while "=" in words[0]:
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        commands[words[0]] = (env, words)
    assert set(commands) == {"python", "gunicorn"}, block.code
    return commands


def serve(venv, app_dir, command, port, redis_url=None):
    """Run one of the page's commands with the venv's executable, on ``port``."""
    env, argv = docs_commands()[command]
    if "SNORKY_REDIS_URL" in env:
        assert redis_url, "the page's command names a Redis"
        env["SNORKY_REDIS_URL"] = redis_url
    argv = [str(port) if word == "8002" else word for word in argv]  # the page's port: a free one
    # HOME: gunicorn's control socket (~/.gunicorn/gunicorn.ctl) is the app's own, not
    # shared with other tests' gunicorns; PYTHONPATH: nothing but the venv
    env.update(HOME=str(app_dir), PYTHONPATH="")
    return ServerProcess(args=["-c", EXEC, str(venv / "bin" / argv[0]), *argv[1:]], port=port, cwd=app_dir,
                         env=env)


def where(page):
    page.wait_for_function("typeof live !== 'undefined' && live.isConnected", timeout=T)
    return page.evaluate("live.services.worker.where()")


def watched(page, shows_before=0):
    """Wait until the page's watch has answered (it shows the totals)."""
    page.wait_for_function("n => window.shows > n", arg=shows_before, timeout=T)


def sees(page, option, votes):
    page.wait_for_function("([o, n]) => window.shown[o] === n", arg=[option, votes], timeout=T)


@pytest.fixture
def browser(playwright_instance):
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    yield b
    b.close()


def open_page(browser, url, errors):
    page = browser.new_context().new_page()
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url + "/")
    return page


def pages_on_two_workers(browser, srv, errors):
    """Two pages whose connections are held by different workers (the kernel
    spreads the accepts: page B is reloaded until it reaches the other one)."""
    a = open_page(browser, srv.url, errors)
    b = open_page(browser, srv.url, errors)
    pid_a = where(a)["pid"]
    for _ in range(40):
        if where(b)["pid"] != pid_a:
            return a, b
        b.reload()
    raise AssertionError(f"page B never reached a worker other than {pid_a}")


@pytest.mark.timeout(300)  # the first run on a machine downloads the dependencies
def test_newcomer_journey_two_workers_redis_restart(venv, tmp_path, browser):
    redis = RedisServer().start()
    write_app(tmp_path)
    port = free_port()
    srv = serve(venv, tmp_path, "gunicorn", port, redis.url)
    errors = []
    try:
        a, b = pages_on_two_workers(browser, srv, errors)
        info_a, info_b = where(a), where(b)
        assert info_a["snorky_sync"].startswith(str(venv)), info_a  # the wheel's, not the repository's
        assert info_a["pid"] != info_b["pid"]
        watched(a)
        watched(b)
        # a vote on each worker reaches the page on the other, and both count it once
        a.evaluate("clickVote('pizza')")
        sees(b, "pizza", 1)
        sees(a, "pizza", 1)
        b.evaluate("clickVote('pizza')")
        sees(a, "pizza", 2)   # one count for both workers (without Redis: 1 on each)
        sees(b, "pizza", 2)
        b.evaluate("clickVote('salad')")
        sees(a, "salad", 1)

        # SIGTERM to the master: each worker closes its pages with 1001 (the shipped worker_exit)
        before = {p: p.evaluate("[live.connectionCount, window.shows]") for p in (a, b)}
        os.kill(srv.proc.pid, signal.SIGTERM)
        for p in (a, b):
            p.wait_for_function("window.closes.includes(1001)", timeout=T)
        assert srv.proc.wait(30) == 0, srv.log()
        srv.stop()

        # the same command on the same port: both pages reconnect and watch again
        srv = serve(venv, tmp_path, "gunicorn", port, redis.url)
        for p, (connections, shows) in before.items():
            p.wait_for_function("n => live.isConnected && live.connectionCount > n", arg=connections, timeout=T)
            watched(p, shows)
            assert p.evaluate("window.shown") == {"pizza": 2, "salad": 1}   # the totals stayed in Redis
        # and carry on: a vote on each is seen by the other
        a.evaluate("clickVote('sushi')")
        sees(b, "sushi", 1)
        b.evaluate("clickVote('sushi')")
        sees(a, "sushi", 2)
        # on two workers again (a connection closed: the page reconnects as the docs' code does)
        for _ in range(20):
            if where(a)["pid"] != where(b)["pid"]:
                break
            shows = b.evaluate("window.shows")
            b.evaluate("live._socket.close()")
            watched(b, shows)
        else:
            raise AssertionError("page B never reached the other worker after the restart")
        b.evaluate("clickVote('salad')")
        sees(a, "salad", 2)
        a.evaluate("clickVote('pizza')")
        sees(b, "pizza", 3)
        assert errors == []
    finally:
        srv.stop()
        redis.kill()


def test_the_same_page_in_one_process(venv, tmp_path, browser):
    """docs/writing-a-service.md: the same file served by one process (the page's
    first command, state in memory) behaves as on two workers."""
    write_app(tmp_path)
    srv = serve(venv, tmp_path, "python", free_port())
    errors = []
    try:
        a = open_page(browser, srv.url, errors)
        b = open_page(browser, srv.url, errors)
        assert where(a)["pid"] == where(b)["pid"] == srv.proc.pid
        assert where(a)["snorky_sync"].startswith(str(venv))
        watched(a)
        watched(b)
        a.evaluate("clickVote('pizza')")
        sees(b, "pizza", 1)
        b.evaluate("clickVote('pizza')")
        sees(a, "pizza", 2)
        sees(b, "pizza", 2)
        assert errors == []
    finally:
        srv.stop()

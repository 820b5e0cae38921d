import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import pytest  # noqa: E402

# A test that skips fails instead when SNORKY_NO_SKIPS=1 (scripts/test.sh sets it:
# it installs everything the tests need) or, when SNORKY_NO_SKIPS is unset, when
# CI=true; SNORKY_NO_SKIPS=0 lets tests skip.  The skips allowed all the same, each
# with its reason: node id (or its start) -> why.
ALLOWED_SKIPS: dict[str, str] = {}


def _no_skips() -> bool:
    flag = os.environ.get("SNORKY_NO_SKIPS")
    return flag == "1" if flag is not None else os.environ.get("CI") == "true"


def _forbidden_skip(report, nodeid: str) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and _no_skips() and \
            not any(nodeid.startswith(allowed) for allowed in ALLOWED_SKIPS):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"{nodeid} was skipped ({why}), and no test may skip here "
                           "(SNORKY_NO_SKIPS=1 or CI=true; allowed skips: ALLOWED_SKIPS in tests/conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _forbidden_skip(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips as a whole (pytest.skip(allow_module_level=True))."""
    outcome = yield
    _forbidden_skip(outcome.get_result(), collector.nodeid)


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


@pytest.fixture(autouse=True)
def fresh_log_limits(monkeypatch):
    """Each test its own log rate limits: snorky_sync's RateLimitedLoggers are
    module-level, so without this an earlier test's 500 bad frames keep a later
    test's one warning out of the log (and out of caplog), and the outcome depends
    on the order.  Every RateLimitedLogger of a loaded snorky_sync module is
    replaced, for this test, by a new one with the same logger, burst and period;
    monkeypatch puts the module's own back afterwards."""
    from snorky_sync.logs import RateLimitedLogger

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "snorky_sync" or name.startswith("snorky_sync.")):
            continue
        for attr, value in list(vars(module).items()):
            if type(value) is RateLimitedLogger:
                monkeypatch.setattr(module, attr, RateLimitedLogger(value.logger, value.burst, value.period))

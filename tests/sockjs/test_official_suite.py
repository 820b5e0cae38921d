"""sockjs-protocol's own test suite, as published (tests/sockjs/official/, see
its README.md), against tests/sockjs/protocol_server.py under every server
kind: one pytest test per suite test.  The differences the project keeps on
purpose are ``xfail(strict=True)`` with their reason (docs/sockjs.md says why):
if the server ever passes one, the run fails and the mark must go."""
import unittest

import pytest
import websocket

from .official import sockjs_protocol as suite

#: suite test -> why the project answers otherwise (docs/sockjs.md, "Conformance")
DELIBERATE: dict[str, str] = {
    "Websocket.test_haproxy":
        "hixie-76 (a pre-RFC 6455 WebSocket draft, Sec-WebSocket-Key1/Key2) is not served: "
        "no browser has sent it since 2012; the handshake gets 426",
}


def _cases() -> list[str]:
    names = []
    for group in unittest.TestLoader().loadTestsFromModule(suite):
        for case in group:
            names.append(f"{type(case).__name__}.{case._testMethodName}")
    return names


CASES = _cases()


@pytest.fixture
def official(sockjs_server, monkeypatch):
    """The suite's module-level URLs pointed at this server."""
    top = sockjs_server.url
    for name, path in (("test_top_url", ""), ("base_url", "/echo"), ("close_base_url", "/close"),
                       ("wsoff_base_url", "/disabled_websocket_echo"),
                       ("cookie_base_url", "/cookie_needed_echo")):
        monkeypatch.setattr(suite, name, top + path)
    old = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(5)  # the suite's websocket-client connections have none
    yield
    websocket.setdefaulttimeout(old)


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=DELIBERATE[c])) if c in DELIBERATE else c
    for c in CASES])
def test_official(official, case):
    cls, method = case.split(".")
    getattr(suite, cls)(method).debug()  # runs setUp, the test, tearDown; raises what fails


def test_every_suite_test_is_collected():
    assert len(CASES) == 68

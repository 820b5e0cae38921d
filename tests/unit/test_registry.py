"""ServiceRegistry routing and bad-input handling (protocol.md §1)."""
import pytest

from snorky_sync import Service, ServiceRegistry
from snorky_sync.metrics import counters
from support.fakes import FakeClient


class Echo(Service):
    def __init__(self, name):
        super().__init__(name)
        self.connected, self.disconnected = [], []

    def process_message_from(self, client, msg):
        self.send_message_to(client, msg)

    def client_connected(self, client):
        self.connected.append(client)

    def client_disconnected(self, client):
        self.disconnected.append(client)


class Broken(Service):
    def client_connected(self, client):
        raise RuntimeError("boom")

    def client_disconnected(self, client):
        raise RuntimeError("boom")


@pytest.fixture
def registry():
    r = ServiceRegistry()
    r.register_service(Echo("echo"))
    return r


def test_routes_by_service_name(registry):
    c = FakeClient()
    registry.process_message_raw(c, b'{"service": "echo", "message": [1, {"a": null}]}')
    registry.process_message_raw(c, '{"service": "echo", "message": "text"}')
    assert c.messages == [{"service": "echo", "message": [1, {"a": None}]},
                          {"service": "echo", "message": "text"}]


@pytest.mark.parametrize("raw", [
    b"not json", b"\xff\xfe{}", b"[1, 2]", b'"echo"', b"null", b"{}",
    b'{"service": "echo"}', b'{"message": 1}', b'{"service": "Echo", "message": 1}',
    b'{"service": 5, "message": 1}', b'{"service": ["echo"], "message": 1}',
    b'{"service": "nope", "message": 1}',
])
def test_bad_input_is_logged_and_nothing_is_sent(registry, raw, caplog):
    c = FakeClient(remote_address="10.9.8.7:1234")
    registry.process_message_raw(c, raw)
    assert c.frames == []
    assert "10.9.8.7:1234" in caplog.text


def test_bad_input_warnings_are_rate_limited(registry, caplog):
    c = FakeClient(remote_address="1.2.3.4:5")
    before = counters["frames_invalid"]
    for _ in range(500):
        registry.process_message_raw(c, b"garbage")
    assert counters["frames_invalid"] - before == 500
    assert caplog.text.count("invalid JSON") <= 10


def test_register_and_unregister(registry):
    with pytest.raises(ValueError):
        registry.register_service(Echo("echo"))
    registry.register_service(Echo("other"))
    assert "other" in registry
    registry.unregister_service("other")
    assert "other" not in registry
    svc = registry.get_service("echo")
    registry.unregister_service(svc)
    c = FakeClient()
    registry.process_message_raw(c, b'{"service": "echo", "message": 1}')
    assert c.frames == []


def test_connect_and_disconnect_reach_every_service_even_if_one_fails(registry, caplog):
    registry.register_service(Broken("broken"))
    registry.register_service(Echo("second"))
    c = FakeClient()
    registry.client_connected(c)
    registry.client_disconnected(c)
    for name in ("echo", "second"):
        svc = registry.get_service(name)
        assert svc.connected == [c] and svc.disconnected == [c]
    assert "boom" in caplog.text

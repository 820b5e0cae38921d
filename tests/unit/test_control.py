"""ControlService.disconnect (issue #24 item 2) with fake clients: this process
through the app's Connections, another one through a (linked) broker."""
import types

import pytest

from snorky_sync.endpoints.connections import Connections
from snorky_sync.services.control import (
    CLOSE_DISCONNECTED,
    CLOSE_DO_NOT_RECONNECT,
    ControlService,
)
from support.fakes import FakeClient, LinkedBroker, rpc


class ClosingClient(FakeClient):
    """Records the close the server asks for."""

    __slots__ = ("shut",)

    def __init__(self, identity=None):
        super().__init__(identity)
        self.shut = None

    def close(self, code=1000, reason="", after_flush=None):
        if self.shut is None:
            self.shut = (code, reason)

    @property
    def closed(self):
        return self.shut is not None


def process(broker=None):
    """A control service acting on one app's connections (what Runtime.mount does)."""
    connections = Connections()
    control = ControlService("control")
    control.use_runtime(types.SimpleNamespace(connections=connections))
    if broker is not None:
        control.use_broker(broker)
    return control, connections


def connect(connections, identity):
    client = ClosingClient(identity)
    connections.track(client)
    return client


def test_disconnect_closes_every_connection_of_the_identity_only():
    control, connections = process()
    mine = [connect(connections, "u42") for _ in range(3)]
    other, anonymous = connect(connections, "u7"), connect(connections, None)
    caller = FakeClient()
    answer = rpc(control, caller, "disconnect", {"identity": "u42", "reconnect": False, "reason": "banned"})
    assert answer["data"] == {"closed": 3}
    assert [c.shut for c in mine] == [(CLOSE_DO_NOT_RECONNECT, "banned")] * 3
    assert other.shut is None and anonymous.shut is None
    # default: the page may come back, reason "Disconnected"
    assert rpc(control, caller, "disconnect", {"identity": "u7"})["data"] == {"closed": 1}
    assert other.shut == (CLOSE_DISCONNECTED, "Disconnected")
    # nobody left for u42: nothing closed twice
    assert rpc(control, caller, "disconnect", {"identity": "u42"})["data"] == {"closed": 0}


def test_identities_compare_by_json_value():
    control, connections = process()
    client = connect(connections, {"user": 42, "org": "a"})
    answer = rpc(control, FakeClient(), "disconnect", {"identity": {"org": "a", "user": 42}})
    assert answer["data"] == {"closed": 1} and client.shut == (CLOSE_DISCONNECTED, "Disconnected")


def test_disconnect_reaches_the_other_process_through_the_broker():
    broker_a, broker_b = LinkedBroker(), LinkedBroker()
    broker_a.peer, broker_b.peer = broker_b, broker_a
    control_a, conns_a = process(broker_a)
    _control_b, conns_b = process(broker_b)
    here, there = connect(conns_a, "u42"), connect(conns_b, "u42")
    bystander = connect(conns_b, "u1")
    answer = rpc(control_a, FakeClient(), "disconnect", {"identity": "u42", "reconnect": False})
    assert answer["data"] == {"closed": 1}  # this process's
    assert here.shut == there.shut == (CLOSE_DO_NOT_RECONNECT, "Disconnected")
    assert bystander.shut is None
    assert broker_a.published == ["control:control"]


@pytest.mark.parametrize("params,error", [
    ({}, "Invalid params"),
    ({"identity": None}, "Invalid identity"),
    ({"identity": "u", "reconnect": "no"}, "Invalid reconnect"),
    ({"identity": "u", "reason": 3}, "Invalid reason"),
    ({"identity": "u", "reason": "é" * 62}, "Reason too long"),  # 124 bytes of UTF-8
])
def test_bad_params_are_refused_before_anything_is_closed(params, error):
    broker = LinkedBroker()
    control, connections = process(broker)
    client = connect(connections, "u")
    answer = rpc(control, FakeClient(), "disconnect", params)
    assert answer["type"] == "error" and answer["message"].startswith(error), answer
    assert client.shut is None and broker.published == []


def test_connections_index_follows_track_and_untrack():
    connections = Connections()
    a, b = ClosingClient("u"), ClosingClient("u")
    key_a, key_b = connections.track(a), connections.track(b)
    assert connections.of_identity("u") == 2 and set(connections.clients_of("u")) == {a, b}
    connections.untrack(a, key_a)
    assert connections.clients_of("u") == [b] and connections.of_identity("u") == 1
    connections.untrack(b, key_b)
    assert connections.clients_of("u") == [] and connections.per_identity == {}


def test_snorky_backend_mount_gives_the_service_the_apps_connections():
    from flask import Flask

    from snorky_sync import ServiceRegistry, Snorky
    from snorky_sync.runtime import Runtime

    app = Flask("t")
    control = ControlService()
    Snorky(app).backend("/backend", ServiceRegistry([control]), api_key="k" * 32)
    assert control.connections == [Runtime.of(app).connections]


def test_the_default_app_has_control_in_its_backend_registry():
    from snorky_sync.app import create_app
    from snorky_sync.runtime import Runtime
    from snorky_sync.settings import Settings

    app = create_app(Settings(api_key="k" * 32, demos=False))
    control = app.extensions["snorky_sync.registries"]["backend"].get_service("control")
    assert isinstance(control, ControlService)
    assert control.connections == [Runtime.of(app).connections]


def test_info_without_a_distributed_broker_is_this_process():
    import os

    control, connections = process()
    connect(connections, "u42"), connect(connections, "u42"), connect(connections, None)
    (here,) = rpc(control, FakeClient(), "info")["data"]["processes"]
    assert here["pid"] == os.getpid() and here["origin"] is None
    assert (here["connections"], here["identities"]) == (3, 1)


def test_info_counts_the_slow_consumers():
    """``slow``: connections whose backlog is past half their queue budget
    (cut past all of it); ``slowDisconnects``: those the process cut."""
    from snorky_sync.metrics import counters

    control, connections = process()
    fast, slow, many = (connect(connections, f"u{i}") for i in range(3))
    fast._queue.append(b"x" * 1000)
    fast._queued_bytes = 1000
    slow._queue.append(b"x" * (600 * 1024))       # > half of 1 MiB (max_queue_bytes)
    slow._queued_bytes = 600 * 1024
    many._queue.extend([b"x"] * 5001)             # > half of 10000 frames (max_queue_frames)
    many._queued_bytes = 5001
    (here,) = rpc(control, FakeClient(), "info")["data"]["processes"]
    assert here["slow"] == 2
    assert here["slowDisconnects"] == counters["slow_consumer_disconnects"]
    fast._queue.clear(), slow._queue.clear(), many._queue.clear()
    fast._queued_bytes = slow._queued_bytes = many._queued_bytes = 0
    assert rpc(control, FakeClient(), "info")["data"]["processes"][0]["slow"] == 0


def test_info_gathers_every_process_through_the_broker():
    broker_a, broker_b = LinkedBroker(), LinkedBroker()
    broker_a.peer, broker_b.peer = broker_b, broker_a
    broker_a.peers = {broker_b.origin: 0.0}  # what a Redis broker knows from heartbeats
    control_a, conns_a = process(broker_a)
    _control_b, conns_b = process(broker_b)
    connect(conns_a, "u1")
    connect(conns_b, "u1"), connect(conns_b, "u2")
    here, there = rpc(control_a, FakeClient(), "info")["data"]["processes"]
    assert (here["origin"], here["connections"], here["identities"]) == (broker_a.origin.hex(), 1, 1)
    assert (there["origin"], there["connections"], there["identities"]) == (broker_b.origin.hex(), 2, 2)
    assert control_a._asking == {}

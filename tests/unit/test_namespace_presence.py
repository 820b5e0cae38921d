"""Per-namespace presence (issue #24 items 1 and 4): ``Namespace(presence=True)``
turns presence with metadata on for that namespace's channels of a service
created without it, ``presence=False`` off for a service created with it;
the commands, the notifications and the backend's control.presence follow
the channel's namespace.  A real server: tests/security/test_namespaces.py."""
import types

import pytest

from snorky_sync.endpoints.connections import Connections
from snorky_sync.registry import ServiceRegistry
from snorky_sync.services.chat import ChatService
from snorky_sync.services.control import ControlService
from snorky_sync.services.namespaces import Namespace, Namespaces
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient, rpc

OFF = "Presence not enabled"
SERVICES = [PubSubService, ChatService]


def enter_of(cls):
    return "subscribe" if cls is PubSubService else "join"


def kinds(client):
    return [m["type"] for m in client.pop_messages() if m.get("type") == "presenceChange"]


@pytest.mark.parametrize("cls", SERVICES)
def test_a_namespace_turns_presence_on_for_its_channels_only(cls):
    enter = enter_of(cls)
    svc = cls("svc", namespaces={"room": Namespace(presence=True)})
    assert svc.presence_state is not None
    a, b = FakeClient("alice"), FakeClient("bob")
    answer = rpc(svc, a, enter, {"channel": "room:1", "presence": True, "meta": {"s": "on"}})["data"]
    assert [(e["identity"], e["meta"]) for e in answer["presence"]] == [("alice", {"s": "on"})]
    rpc(svc, b, enter, {"channel": "room:1", "meta": "b"})
    assert kinds(a) == ["presenceChange"]
    assert rpc(svc, b, "presenceStats", {"channel": "room:1"})["data"] == {"clients": 2, "users": 2}
    assert rpc(svc, b, "updatePresence", {"channel": "room:1", "meta": "b2"})["data"] is None
    assert rpc(svc, a, "presence", {"channel": "room:1"})["data"]["presence"][1]["meta"] == "b2"
    # elsewhere (another namespace, the default one, a non-string channel): none
    for channel in ("lobby", "misc:x", {"room": 1}):
        assert rpc(svc, a, enter, {"channel": channel, "presence": True})["message"] == OFF
        assert rpc(svc, a, enter, {"channel": channel, "meta": 1})["message"] == OFF
        assert rpc(svc, a, enter, {"channel": channel})["type"] == "response"
        rpc(svc, b, enter, {"channel": channel})
        for command, params in (("updatePresence", {"channel": channel, "meta": 1}),
                                ("presence", {"channel": channel}), ("presenceStats", {"channel": channel})):
            assert rpc(svc, a, command, params)["message"] == OFF
    assert kinds(a) == []  # nobody was told of the others' entering: they have no entries
    assert set(svc.presence_state.channels) == {"room:1"}


@pytest.mark.parametrize("cls", SERVICES)
def test_a_namespace_turns_the_services_presence_off(cls):
    enter = enter_of(cls)
    svc = cls("svc", presence=True, namespaces=Namespaces({"quiet": Namespace(presence=False)}))
    a, b = FakeClient("alice"), FakeClient("bob")
    assert rpc(svc, a, enter, {"channel": "quiet:1", "presence": True})["message"] == OFF
    rpc(svc, a, enter, {"channel": "quiet:1"})
    rpc(svc, b, enter, {"channel": "quiet:1"})
    assert rpc(svc, a, "presenceStats", {"channel": "quiet:1"})["message"] == OFF
    assert rpc(svc, a, enter, {"channel": "loud", "presence": True})["data"]["presence"][0]["identity"] == "alice"
    rpc(svc, b, enter, {"channel": "loud"})
    assert rpc(svc, a, "presenceStats", {"channel": "loud"})["data"] == {"clients": 2, "users": 2}
    assert set(svc.presence_state.channels) == {"loud"}


@pytest.mark.parametrize("cls", SERVICES)
def test_the_default_namespace_decides_for_the_unnamed_channels(cls):
    svc = cls("svc", namespaces=Namespaces({"x": Namespace()}, default=Namespace(presence=True)))
    a = FakeClient("alice")
    assert rpc(svc, a, enter_of(cls), {"channel": "anything", "presence": True})["data"]["presence"]
    assert rpc(svc, a, enter_of(cls), {"channel": "x:1", "presence": True})["message"] == OFF


@pytest.mark.parametrize("cls", SERVICES)
def test_no_namespace_wanting_presence_keeps_none(cls):
    svc = cls("svc", namespaces={"x": Namespace(presence=False), "y": Namespace()})
    assert svc.presence_state is None
    assert rpc(svc, FakeClient("a"), enter_of(cls), {"channel": "y:1", "presence": True})["message"] == OFF


def test_the_option_is_checked_and_read_from_config():
    with pytest.raises(TypeError, match=r"Namespace\(presence=\.\.\.\) is True, False or None"):
        Namespace(presence="yes")
    ns = Namespaces.from_config('{"room": {"presence": true}, "*": {"presence": false}}')
    assert ns.namespaces["room"].presence is True and ns.default.presence is False
    assert ns.presence_of("room:1", False) and not ns.presence_of("lobby", True)
    assert Namespaces.from_config({"a": {}}).presence_of("a:1", True)  # None: the service's
    with pytest.raises(ValueError, match="unknown option 'presense'.*did you mean 'presence'"):
        Namespaces.from_config({"room": {"presense": True}})


def test_the_backend_asks_per_namespace():
    pubsub = PubSubService("pubsub", namespaces={"room": Namespace(presence=True)})
    chat = ChatService("chat", presence=True, namespaces={"quiet": Namespace(presence=False)})
    control = ControlService("control")
    control.use_runtime(types.SimpleNamespace(connections=Connections(),
                                              registries=[ServiceRegistry([pubsub, chat])]))
    a, backend = FakeClient("alice"), FakeClient()
    for svc, channel in ((pubsub, "room:1"), (pubsub, "lobby"), (chat, "quiet:1"), (chat, "lobby")):
        rpc(svc, a, enter_of(type(svc)), {"channel": channel})
    for service, on, off in (("pubsub", "room:1", "lobby"), ("chat", "lobby", "quiet:1")):
        assert rpc(control, backend, "presenceStats", {"service": service, "channel": on})["data"] == \
            {"clients": 1, "users": 1}
        for command in ("presence", "presenceStats"):
            assert rpc(control, backend, command, {"service": service, "channel": off})["message"] == OFF

"""Presence with metadata (issue #24 item 4) in PubSub and Chat, with fake
clients: entries, join/update/leave notifications to the connections that
asked only, counts, limits, 0.1's frames untouched; the backend control
service's presence / presenceStats.  Across processes (a channel's presence
in Redis on the channel's shard, a dead process's entries leave): with real
redis-server and gunicorn workers, tests/cluster/test_presence_cluster.py
and tests/cluster/test_interest_routing.py."""
import types

import pytest

from snorky_sync.endpoints.connections import Connections
from snorky_sync.registry import ServiceRegistry
from snorky_sync.services.chat import ChatService
from snorky_sync.services.configure import configure_services
from snorky_sync.services.control import ControlService
from snorky_sync.services.pubsub import PubSubService
from snorky_sync.settings import Settings
from support.fakes import FakeClient, rpc


def changes(client, kind="presenceChange"):
    """The presenceChange notifications received since the last pop: (event, identity, meta)."""
    return [(m["event"], m["identity"], m["meta"]) for m in client.pop_messages()
            if m.get("type") == kind]


def entries(answer):
    return sorted((str(e["identity"]), str(e["meta"])) for e in answer)


@pytest.mark.parametrize("cls", [PubSubService, ChatService])
def test_off_by_default_and_refused_clearly(cls):
    svc, a = cls("svc"), FakeClient("alice")
    enter = "subscribe" if cls is PubSubService else "join"
    assert rpc(svc, a, enter, {"channel": "c", "presence": True})["message"] == "Presence not enabled"
    assert rpc(svc, a, enter, {"channel": "c", "meta": {"s": 1}})["message"] == "Presence not enabled"
    assert rpc(svc, a, enter, {"channel": "c"})["type"] == "response"
    for command, params in (("updatePresence", {"channel": "c", "meta": 1}), ("presence", {"channel": "c"}),
                            ("presenceStats", {"channel": "c"})):
        assert rpc(svc, a, command, params)["message"] == "Presence not enabled"
    assert svc.presence_state is None


def test_pubsub_entries_notifications_and_counts():
    ps = PubSubService("pubsub", presence=True)
    a, a2, b, anon = FakeClient("alice"), FakeClient("alice"), FakeClient("bob"), FakeClient(None)
    answer = rpc(ps, a, "subscribe", {"channel": "room", "presence": True, "meta": {"status": "on"}})["data"]
    assert answer["presence"] == [{"client": answer["client"], "identity": "alice", "meta": {"status": "on"}}]
    # a 0.1 subscribe: its answer is null, it is present (meta null) and hears nothing new
    assert rpc(ps, b, "subscribe", {"channel": "room"})["data"] is None
    assert rpc(ps, a2, "subscribe", {"channel": "room", "meta": "tab2"})["data"] is None
    assert rpc(ps, anon, "subscribe", {"channel": "room"})["data"] is None
    assert changes(a) == [("join", "bob", None), ("join", "alice", "tab2"), ("join", None, None)]
    assert rpc(ps, b, "presenceStats", {"channel": "room"})["data"] == {"clients": 4, "users": 2}
    assert rpc(ps, b, "updatePresence", {"channel": "room", "meta": {"status": "away"}})["data"] is None
    assert changes(a) == [("update", "bob", {"status": "away"})]
    listed = rpc(ps, anon, "presence", {"channel": "room"})["data"]["presence"]
    assert entries(listed) == entries([{"identity": "alice", "meta": {"status": "on"}},
                                       {"identity": "bob", "meta": {"status": "away"}},
                                       {"identity": "alice", "meta": "tab2"},
                                       {"identity": None, "meta": None}])
    assert len({e["client"] for e in listed}) == 4  # one id per connection
    # the watcher's own changes are not echoed to it; the others' are
    rpc(ps, a, "updatePresence", {"channel": "room", "meta": {"status": "busy"}})
    assert changes(a) == []
    rpc(ps, b, "unsubscribe", {"channel": "room"})
    ps.client_disconnected(a2)
    assert changes(a) == [("leave", "bob", {"status": "away"}), ("leave", "alice", "tab2")]
    assert rpc(ps, a, "presenceStats", {"channel": "room"})["data"] == {"clients": 2, "users": 1}
    # no frame of any of it reached a connection that did not ask
    assert changes(anon) == [] and changes(b) == []
    ps.client_disconnected(a)
    ps.client_disconnected(anon)
    assert ps.presence_state.channels == {}


def test_pubsub_reads_and_updates_need_a_subscription():
    ps, a, b = PubSubService("p", presence=True), FakeClient("a"), FakeClient("b")
    rpc(ps, a, "subscribe", {"channel": "c"})
    for command, params in (("updatePresence", {"channel": "c", "meta": 1}), ("presence", {"channel": "c"}),
                            ("presenceStats", {"channel": "c"})):
        assert rpc(ps, b, command, params)["message"] == "Not subscribed"
    assert rpc(ps, a, "subscribe", {"channel": "c", "presence": "yes"})["message"] == "Invalid params"


def test_chat_keeps_its_0_1_presence_and_adds_entries_on_request():
    chat = ChatService("chat", presence=True)
    a, b, b2 = FakeClient("alice"), FakeClient("bob"), FakeClient("bob")
    answer = rpc(chat, a, "join", {"channel": "r", "presence": True, "meta": {"device": "phone"}})["data"]
    assert answer["members"] == ["alice"] and answer["presence"][0]["meta"] == {"device": "phone"}
    assert rpc(chat, b, "join", {"channel": "r"})["data"] == {"members": ["alice", "bob"]}  # 0.1's answer
    msgs = a.pop_messages()
    assert [m["type"] for m in msgs] == ["presence", "presenceChange"]
    assert {k: msgs[0][k] for k in ("from", "status")} == {"from": "bob", "status": "joined"}
    rpc(chat, b2, "join", {"channel": "r", "meta": "second tab"})  # 0.1: no presence for bob's 2nd tab
    assert changes(a, "presence") == []
    rpc(chat, b2, "join", {"channel": "r2"})
    assert rpc(chat, b2, "updatePresence", {"channel": "r", "meta": "idle"})["data"] is None
    assert changes(a) == [("update", "bob", "idle")]
    assert rpc(chat, b, "presenceStats", {"channel": "r"})["data"] == {"clients": 3, "users": 2}
    assert rpc(chat, a, "presence", {"channel": "nope"})["message"] == "Not joined"
    rpc(chat, b, "leave", {"channel": "r"})
    chat.client_disconnected(b2)
    msgs = a.pop_messages()
    assert [(m["type"], m.get("event") or m.get("status")) for m in msgs] == [
        ("presenceChange", "leave"), ("presenceChange", "leave"), ("presence", "left")]
    assert changes(b) == [] and changes(b2) == []  # they never asked: nothing new
    assert rpc(chat, a, "presenceStats", {"channel": "r"})["data"] == {"clients": 1, "users": 1}


@pytest.mark.parametrize("cls", [PubSubService, ChatService])
def test_limits_are_keywords_checked_and_enforced(cls):
    enter = "subscribe" if cls is PubSubService else "join"
    svc = cls("svc", presence=True, max_presence_entries=2, max_presence_meta_size=20)
    a, b, c = FakeClient("a"), FakeClient("b"), FakeClient("c")
    assert rpc(svc, a, enter, {"channel": "x", "meta": "y" * 30})["message"] == "Presence metadata too large"
    assert rpc(svc, a, enter, {"channel": "x", "meta": "y" * 10})["type"] == "response"
    assert rpc(svc, a, "updatePresence", {"channel": "x", "meta": ["z"] * 10})["message"] == \
        "Presence metadata too large"
    assert rpc(svc, b, enter, {"channel": "x"})["type"] == "response"
    assert rpc(svc, c, enter, {"channel": "x"})["message"] == "Presence full"
    # the refused connection is in nothing: not subscribed / joined, not present
    assert rpc(svc, c, "presenceStats", {"channel": "x"})["message"] in ("Not subscribed", "Not joined")
    assert rpc(svc, a, "presenceStats", {"channel": "x"})["data"] == {"clients": 2, "users": 2}
    assert rpc(svc, c, enter, {"channel": "other"})["type"] == "response"  # per channel
    with pytest.raises(TypeError, match=r"max_presence_entries=\.\.\.\) is an integer"):
        cls("svc", presence=True, max_presence_entries="10")
    with pytest.raises(ValueError, match=r"max_presence_meta_size=\.\.\.\) is an integer >= 0"):
        cls("svc", max_presence_meta_size=-1)
    with pytest.raises(TypeError, match=r"presence=\.\.\.\) is True or False"):
        cls("svc", presence="yes")


def test_limits_come_from_the_settings_once_mounted():
    ps, chat = PubSubService("p", presence=True), ChatService("c", presence=True)
    configure_services(ServiceRegistry([ps, chat]),
                       Settings(max_presence_entries=7, max_presence_meta_size=99))
    assert (ps.max_presence_entries, ps.max_presence_meta_size) == (7, 99)
    assert (chat.max_presence_entries, chat.max_presence_meta_size) == (7, 99)


# -- the backend control service ---------------------------------------------------------

def app_process(broker=None):
    connections = Connections()
    pubsub, chat = PubSubService("pubsub", presence=True), ChatService("chat", presence=True)
    frontend = ServiceRegistry([pubsub, chat, PubSubService("plain")], broker=broker)
    control = ControlService("control")
    control.use_runtime(types.SimpleNamespace(connections=connections, registries=[frontend]))
    return types.SimpleNamespace(control=control, pubsub=pubsub, chat=chat)


def test_control_presence_and_stats():
    proc = app_process()
    backend = FakeClient()
    a, a2, b = FakeClient("alice"), FakeClient("alice"), FakeClient("bob")
    rpc(proc.pubsub, a, "subscribe", {"channel": {"room": 1}, "meta": {"tab": 1}})
    rpc(proc.pubsub, a2, "subscribe", {"channel": {"room": 1}, "meta": {"tab": 2}})
    rpc(proc.chat, b, "join", {"channel": "lobby", "meta": "hi"})
    answer = rpc(proc.control, backend, "presence", {"service": "pubsub", "channel": {"room": 1}})["data"]
    assert entries(answer["presence"]) == [("alice", "{'tab': 1}"), ("alice", "{'tab': 2}")]
    assert rpc(proc.control, backend, "presenceStats", {"service": "pubsub", "channel": {"room": 1}})["data"] \
        == {"clients": 2, "users": 1}
    assert rpc(proc.control, backend, "presenceStats", {"service": "chat", "channel": "lobby"})["data"] \
        == {"clients": 1, "users": 1}
    assert rpc(proc.control, backend, "presence", {"service": "chat", "channel": "empty"})["data"] == \
        {"presence": []}
    assert rpc(proc.control, backend, "presence", {"service": "nope", "channel": "x"})["message"] == \
        "Unknown service"
    assert rpc(proc.control, backend, "presenceStats", {"service": "plain", "channel": "x"})["message"] == \
        "Presence not enabled"
    assert rpc(proc.control, backend, "presence", {"service": "pubsub", "channel": "x" * 2000})["message"] == \
        "Channel too long"


def test_the_backend_connector_asks_the_control_service():
    from snorky_sync.backend import LocalTransport, SnorkyBackend
    proc = app_process()
    a, b = FakeClient("alice"), FakeClient("bob")
    rpc(proc.chat, a, "join", {"channel": "lobby", "meta": {"device": "phone"}})
    rpc(proc.chat, b, "join", {"channel": "lobby"})
    snorky = SnorkyBackend(LocalTransport(ServiceRegistry([proc.control])))
    assert snorky.presence_stats("lobby", service="chat") == {"clients": 2, "users": 2}
    assert entries(snorky.presence("lobby", service="chat")) == [("alice", "{'device': 'phone'}"),
                                                                 ("bob", "None")]
    assert snorky.presence("room") == []  # service="pubsub" by default

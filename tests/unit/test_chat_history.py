"""Chat with history (one process): offsets on messages, join with since / recent."""
import pytest

from snorky_sync.services.chat import ChatService
from support.fakes import FakeClient, rpc


def call(svc, client, command, params):
    """The frames before the answer, and the answer."""
    client.frames.clear()
    svc.process_message_from(client, {"command": command, "params": params, "callId": 1})
    got = client.pop_messages()
    return got[:-1], got[-1]


def test_without_history_join_answers_members_only_as_in_01():
    svc = ChatService("chat")
    assert rpc(svc, FakeClient("ann"), "join", {"channel": "c"})["data"] == {"members": ["ann"]}
    assert rpc(svc, FakeClient("bob"), "join", {"channel": "c", "recent": 5})["message"] == "History not enabled"


def test_messages_carry_offsets_and_a_rejoin_recovers_the_gap():
    svc = ChatService("chat", history_size=50)
    ann, bob = FakeClient("ann"), FakeClient("bob")
    first = rpc(svc, ann, "join", {"channel": "c"})["data"]
    assert first["members"] == ["ann"] and first["offset"] == 0
    rpc(svc, bob, "join", {"channel": "c"})
    ann.frames.clear()
    rpc(svc, bob, "send", {"channel": "c", "body": "one"})
    msg = [m for m in ann.pop_messages() if m["type"] == "message"][0]
    assert (msg["body"], msg["offset"], msg["epoch"]) == ("one", 1, first["epoch"])
    svc.client_disconnected(ann)                                  # ann's connection drops
    for body in ("two", "three"):
        rpc(svc, bob, "send", {"channel": "c", "body": body})
    ann2 = FakeClient("ann")
    replay, answer = call(svc, ann2, "join", {"channel": "c", "since": {"offset": 1, "epoch": first["epoch"]}})
    assert [m["body"] for m in replay if m["type"] == "message"] == ["two", "three"]
    assert answer["data"]["recovered"] is True and answer["data"]["offset"] == 3
    assert sorted(answer["data"]["members"]) == ["ann", "bob"]


def test_recent_messages_for_a_page_opening_the_room():
    svc = ChatService("chat", history_size=50)
    bob = FakeClient("bob")
    rpc(svc, bob, "join", {"channel": "c"})
    for i in range(5):
        rpc(svc, bob, "send", {"channel": "c", "body": i})
    replay, answer = call(svc, FakeClient("ann"), "join", {"channel": "c", "recent": 2})
    assert [m["body"] for m in replay if m["type"] == "message"] == [3, 4]
    assert "recovered" not in answer["data"]
    _, bad = call(svc, FakeClient("cy"), "join", {"channel": "c", "recent": "all"})
    assert bad["message"] == "Invalid params"


def test_a_lost_history_says_recovered_false():
    svc = ChatService("chat", history_size=2)
    bob = FakeClient("bob")
    epoch = rpc(svc, bob, "join", {"channel": "c"})["data"]["epoch"]
    for i in range(5):
        rpc(svc, bob, "send", {"channel": "c", "body": i})
    replay, answer = call(svc, FakeClient("ann"), "join", {"channel": "c", "since": {"offset": 1, "epoch": epoch}})
    assert [m for m in replay if m["type"] == "message"] == []
    assert answer["data"]["recovered"] is False and answer["data"]["offset"] == 5


def test_history_parameters_are_checked():
    with pytest.raises(TypeError, match="history_size"):
        ChatService("c", history_size="10")

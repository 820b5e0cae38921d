"""ChatService (protocol.md §3), with fake clients."""
from datetime import datetime

import pytest

from snorky_sync.services.chat import ChatService
from support.fakes import FakeClient, rpc


@pytest.fixture
def chat():
    return ChatService("chat")


def strip_ts(msgs):
    out = []
    for m in msgs:
        m = dict(m)
        ts = m.pop("timestamp", None)
        if ts is not None:
            assert datetime.fromisoformat(ts).utcoffset() is not None  # ISO 8601 with an offset
        out.append(m)
    return out


def test_join_presence_and_members(chat):
    a1, a2, b = FakeClient("alice"), FakeClient("alice"), FakeClient({"id": 2})
    assert rpc(chat, a1, "join", {"channel": "room"})["data"] == {"members": ["alice"]}
    answer = rpc(chat, b, "join", {"channel": "room"})
    assert sorted(map(str, answer["data"]["members"])) == sorted(["alice", str({"id": 2})])
    assert strip_ts(a1.pop_messages()) == [{"type": "presence", "from": {"id": 2}, "channel": "room", "status": "joined"}]
    # a second connection of alice: no presence, members hold alice once
    members = rpc(chat, a2, "join", {"channel": "room"})["data"]["members"]
    assert members.count("alice") == 1 and len(members) == 2
    assert a1.frames == [] and b.frames == []


def test_presence_is_sent_before_the_join_reply_to_nobody_new(chat):
    a, b = FakeClient("a"), FakeClient("b")
    rpc(chat, a, "join", {"channel": "x"})
    b.frames.clear()
    chat.process_message_from(b, {"command": "join", "params": {"channel": "x"}, "callId": 4})
    assert [m["type"] for m in b.pop_messages()] == ["response"]  # the joiner gets no presence of itself


def test_leave_presence_only_when_last_connection_leaves(chat):
    a1, a2, b = FakeClient("alice"), FakeClient("alice"), FakeClient("bob")
    for c in (a1, a2, b):
        rpc(chat, c, "join", {"channel": "r"})
    for c in (a1, a2, b):
        c.frames.clear()
    rpc(chat, a1, "leave", {"channel": "r"})
    assert b.frames == [] and a2.frames == []
    rpc(chat, a2, "leave", {"channel": "r"})
    assert strip_ts(b.pop_messages()) == [{"type": "presence", "from": "alice", "channel": "r", "status": "left"}]
    assert rpc(chat, a2, "leave", {"channel": "r"})["message"] == "Not joined"


def test_send_reaches_everyone_including_sender_before_reply_with_one_timestamp(chat):
    a, b, c = FakeClient("a"), FakeClient("b"), FakeClient("c")
    for x in (a, b, c):
        rpc(chat, x, "join", {"channel": {"room": 1}})
    for x in (a, b, c):
        x.frames.clear()
    chat.process_message_from(a, {"command": "send", "params": {"channel": {"room": 1}, "body": "hi"}, "callId": 9})
    got_a = a.pop_messages()
    assert [m["type"] for m in got_a] == ["message", "response"]
    got = [got_a[0]] + b.pop_messages() + c.pop_messages()
    assert len({m["timestamp"] for m in got}) == 1
    assert strip_ts(got) == [{"type": "message", "from": "a", "channel": {"room": 1}, "body": "hi"}] * 3


def test_read_receipts_go_to_the_identity_other_connections(chat):
    a1, a2, a3, b = FakeClient("a"), FakeClient("a"), FakeClient("a"), FakeClient("b")
    for x in (a1, a2, b):
        rpc(chat, x, "join", {"channel": "r"})
    for x in (a1, a2, b):
        x.frames.clear()
    assert rpc(chat, a3, "read", {"channel": "r"})["data"] is None  # need not have joined
    assert strip_ts(a1.pop_messages()) == [{"type": "read", "channel": "r"}]
    assert strip_ts(a2.pop_messages()) == [{"type": "read", "channel": "r"}]
    assert b.frames == []
    rpc(chat, a1, "read", {"channel": "r"})
    assert a1.frames == [] and len(a2.frames) == 1


def test_errors(chat):
    anon, a = FakeClient(None), FakeClient("a")
    assert rpc(chat, anon, "join", {"channel": "r"})["message"] == "Not authenticated"
    assert rpc(chat, anon, "read", {"channel": "r"})["message"] == "Not authenticated"
    rpc(chat, a, "join", {"channel": "r"})
    assert rpc(chat, a, "join", {"channel": "r"})["message"] == "Already joined"
    assert rpc(chat, a, "send", {"channel": "other", "body": 1})["message"] == "Not joined"
    assert rpc(chat, a, "leave", {"channel": "other"})["message"] == "Not joined"
    assert rpc(chat, a, "join", {"channel": "x" * 2000})["message"] == "Channel too long"


def test_disconnect_leaves_every_channel(chat):
    a, b = FakeClient("a"), FakeClient("b")
    for ch in ("r1", "r2", ["r", 3]):
        rpc(chat, a, "join", {"channel": ch})
        rpc(chat, b, "join", {"channel": ch})
    b.frames.clear()
    chat.client_disconnected(a)
    left = strip_ts(b.pop_messages())
    assert sorted(map(str, left)) == sorted(map(str, [
        {"type": "presence", "from": "a", "channel": ch, "status": "left"} for ch in ("r1", "r2", ["r", 3])]))
    chat.client_disconnected(b)
    assert chat.channels == {} and chat.client_channels == {}

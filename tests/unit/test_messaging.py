"""MessagingService (PROTOCOL.md §3), with fake clients."""
import pytest

from snorky_sync.services.messaging import MessagingService
from support.fakes import FakeClient, rpc


@pytest.fixture
def svc():
    return MessagingService("messaging")


def test_register_list_send(svc):
    a, b = FakeClient(), FakeClient()
    assert rpc(svc, a, "registerParticipant", {"name": "alice"}) == {"type": "response", "callId": 1, "data": None}
    rpc(svc, b, "registerParticipant", {"name": "bob"})
    rpc(svc, b, "registerParticipant", {"name": "bob2"})
    assert rpc(svc, a, "listParticipants")["data"] == ["alice", "bob", "bob2"]
    assert rpc(svc, a, "send", {"sender": "alice", "dest": "bob2", "body": {"hi": [1]}})["data"] is None
    assert b.pop_messages() == [{"type": "message", "sender": "alice", "dest": "bob2", "body": {"hi": [1]}}]
    assert a.frames == []


def test_error_texts_and_order(svc):
    class Picky(MessagingService):
        def is_name_allowed(self, client, name):
            return not name.startswith("admin")
    s = Picky("m")
    a, b = FakeClient(), FakeClient()
    rpc(s, a, "registerParticipant", {"name": "alice"})
    assert rpc(s, b, "registerParticipant", {"name": "alice"})["message"] == "Name already registered"
    assert rpc(s, b, "registerParticipant", {"name": "admin"})["message"] == "Name not allowed"
    assert rpc(s, b, "registerParticipant", {"name": 5})["message"] == "Name not allowed"
    assert rpc(s, b, "unregisterParticipant", {"name": "nobody"})["message"] == "Unknown participant"
    assert rpc(s, b, "unregisterParticipant", {"name": "alice"})["message"] == "Invalid participant"
    # sender checked first, then destination
    assert rpc(s, b, "send", {"sender": "alice", "dest": "nobody", "body": 1})["message"] == "Invalid sender"
    assert rpc(s, b, "send", {"sender": "ghost", "dest": "alice", "body": 1})["message"] == "Invalid sender"
    assert rpc(s, a, "send", {"sender": "alice", "dest": "nobody", "body": 1})["message"] == "Unknown destination"
    assert rpc(s, a, "send", {"sender": "alice", "body": 1})["message"] == "Invalid params"


def test_unregister_and_disconnect_cleanup(svc):
    a, b = FakeClient(), FakeClient()
    for n in ("a1", "a2", "a3"):
        rpc(svc, a, "registerParticipant", {"name": n})
    rpc(svc, b, "registerParticipant", {"name": "b1"})
    rpc(svc, a, "unregisterParticipant", {"name": "a1"})
    assert rpc(svc, b, "send", {"sender": "b1", "dest": "a1", "body": 1})["message"] == "Unknown destination"
    svc.client_disconnected(a)
    assert rpc(svc, b, "listParticipants")["data"] == ["b1"]
    assert a not in svc.names_by_client
    svc.client_disconnected(b)
    assert svc.participants == {} and svc.names_by_client == {}
    # a freed name can be taken by someone else
    c = FakeClient()
    assert rpc(svc, c, "registerParticipant", {"name": "a2"})["type"] == "response"


def test_sending_to_yourself(svc):
    a = FakeClient()
    rpc(svc, a, "registerParticipant", {"name": "me"})
    a.frames.clear()
    svc.process_message_from(a, {"command": "send", "params": {"sender": "me", "dest": "me", "body": "x"}, "callId": 3})
    assert a.pop_messages() == [{"type": "message", "sender": "me", "dest": "me", "body": "x"},
                                {"type": "response", "callId": 3, "data": None}]

"""MessagingService (protocol.md §3), with fake clients."""
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


def test_read_authorization_hooks_refuse_before_anything_is_delivered():
    """can_send (who may write to whom) and can_list_participants (who may see
    the names): refused with Not authorized, after the sender is checked,
    and nothing reaches the destination."""
    class Staff(MessagingService):
        def can_send(self, client, sender, dest):
            return client.identity == "staff" or dest == "helpdesk"

        def can_list_participants(self, client):
            return client.identity == "staff"
    s = Staff("m")
    staff, guest, desk = FakeClient("staff"), FakeClient("guest"), FakeClient("desk")
    rpc(s, staff, "registerParticipant", {"name": "boss"})
    rpc(s, guest, "registerParticipant", {"name": "visitor"})
    rpc(s, desk, "registerParticipant", {"name": "helpdesk"})
    assert rpc(s, guest, "send", {"sender": "boss", "dest": "helpdesk", "body": 1})["message"] == "Invalid sender"
    assert rpc(s, guest, "send", {"sender": "visitor", "dest": "boss", "body": "psst"})["message"] == "Not authorized"
    assert staff.pop_messages() == []
    assert rpc(s, guest, "send", {"sender": "visitor", "dest": "helpdesk", "body": "help"})["data"] is None
    assert desk.pop_messages() == [{"type": "message", "sender": "visitor", "dest": "helpdesk", "body": "help"}]
    assert rpc(s, staff, "send", {"sender": "boss", "dest": "visitor", "body": "hi"})["data"] is None
    assert rpc(s, guest, "listParticipants")["message"] == "Not authorized"
    assert rpc(s, staff, "listParticipants")["data"] == ["boss", "helpdesk", "visitor"]

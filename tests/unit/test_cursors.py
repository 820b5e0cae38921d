"""CursorsService (protocol.md §3), with fake clients."""
import pytest

from snorky_sync.services.base import RPCError
from snorky_sync.services.cursors import CursorsService
from support.fakes import FakeClient, rpc


@pytest.fixture
def svc():
    return CursorsService("cursors")


def joined(svc, *clients, doc="doc"):
    for c in clients:
        assert rpc(svc, c, "join", {"document": doc})["type"] == "response"
        c.frames.clear()


def test_create_update_remove_notify_others_never_the_owner(svc):
    a, a2, b = FakeClient("alice"), FakeClient("alice"), FakeClient("bob")
    joined(svc, a, a2, b)
    handle = rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "doc", "position": 5, "status": "typing"})["data"]
    assert isinstance(handle, int) and 0 <= handle <= 65535
    cursor = {"publicHandle": handle, "document": "doc", "position": 5, "status": "typing", "owner": "alice"}
    assert a.frames == []  # never about its own cursor
    for other in (a2, b):  # other connections of the same identity included
        assert other.pop_messages() == [{"type": "cursorAdded", "cursor": cursor}]
    assert rpc(svc, a, "updateCursor", {"privateHandle": 1, "newData": {"position": 9}})["data"] is None
    assert b.pop_messages() == [{"type": "cursorUpdated", "cursor": {**cursor, "position": 9}}]
    rpc(svc, a, "updateCursor", {"privateHandle": 1, "newData": {"status": "idle", "owner": "mallory"}})
    assert b.pop_messages() == [{"type": "cursorUpdated", "cursor": {**cursor, "position": 9, "status": "idle"}}]
    assert rpc(svc, a, "removeCursor", {"privateHandle": 1})["data"] is None
    assert b.pop_messages() == [{"type": "cursorRemoved", "cursor": {"publicHandle": handle, "document": "doc"}}]
    assert a.frames == []


def test_join_returns_existing_cursors(svc):
    a, b = FakeClient("a"), FakeClient("b")
    joined(svc, a)
    h = rpc(svc, a, "createCursor", {"privateHandle": "p", "document": "doc", "position": [1, 2], "status": None})["data"]
    assert rpc(svc, b, "join", {"document": "doc"})["data"] == {"cursors": [
        {"publicHandle": h, "document": "doc", "position": [1, 2], "status": None, "owner": "a"}]}


def test_errors(svc):
    anon, a = FakeClient(None), FakeClient("a")
    assert rpc(svc, anon, "join", {"document": "d"})["message"] == "Not authenticated"
    joined(svc, a, doc="d")
    assert rpc(svc, a, "join", {"document": "d"})["message"] == "Already joined"
    assert rpc(svc, a, "leave", {"document": "x"})["message"] == "Not joined"
    assert rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "x", "position": 0, "status": 0})["message"] == "Not joined"
    rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d", "position": 0, "status": 0})
    assert rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d", "position": 0, "status": 0})["message"] == "Reused handle"
    assert rpc(svc, a, "updateCursor", {"privateHandle": 2, "newData": {}})["message"] == "No such cursor"
    assert rpc(svc, a, "removeCursor", {"privateHandle": 2})["message"] == "No such cursor"
    assert rpc(svc, a, "updateCursor", {"privateHandle": 1, "newData": 5})["message"] == "Invalid params"


def test_private_handles_and_the_limit_span_documents(svc):
    a = FakeClient("a")
    joined(svc, a, doc="d1")
    joined(svc, a, doc="d2")
    for i in range(16):
        rpc(svc, a, "createCursor", {"privateHandle": i, "document": "d1" if i % 2 else "d2", "position": i, "status": 0})
    assert rpc(svc, a, "createCursor", {"privateHandle": 99, "document": "d1", "position": 0, "status": 0})["message"] == "Too many cursors"
    assert rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d2", "position": 0, "status": 0})["message"] == "Reused handle"
    rpc(svc, a, "removeCursor", {"privateHandle": 3})
    assert rpc(svc, a, "createCursor", {"privateHandle": 99, "document": "d1", "position": 0, "status": 0})["type"] == "response"


def test_hook_can_refuse(svc):
    class ReadOnly(CursorsService):
        def check_new_cursor_allowed(self, client, document):
            raise RPCError("Read only")
    s = ReadOnly("c")
    a = FakeClient("a")
    joined(s, a)
    assert rpc(s, a, "createCursor", {"privateHandle": 1, "document": "doc", "position": 0, "status": 0})["message"] == "Read only"


def test_public_handles_are_unique_within_a_document(svc):
    clients = [FakeClient(f"u{i}") for i in range(300)]
    joined(svc, *clients)
    handles = [rpc(svc, c, "createCursor", {"privateHandle": j, "document": "doc", "position": 0, "status": 0})["data"]
               for c in clients for j in range(16)]
    assert len(handles) == len(set(handles)) == 4800


def test_leave_and_disconnect_remove_cursors(svc):
    a, b = FakeClient("a"), FakeClient("b")
    joined(svc, a, b, doc="d1")
    joined(svc, a, b, doc="d2")
    h1 = rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d1", "position": 0, "status": 0})["data"]
    h2 = rpc(svc, a, "createCursor", {"privateHandle": 2, "document": "d2", "position": 0, "status": 0})["data"]
    b.frames.clear()
    rpc(svc, a, "leave", {"document": "d1"})
    assert b.pop_messages() == [{"type": "cursorRemoved", "cursor": {"publicHandle": h1, "document": "d1"}}]
    assert rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d2", "position": 0, "status": 0})["type"] == "response"
    b.frames.clear()
    svc.client_disconnected(a)
    removed = b.pop_messages()
    assert {m["cursor"]["publicHandle"] for m in removed} >= {h2}
    assert all(m["type"] == "cursorRemoved" for m in removed) and len(removed) == 2
    svc.client_disconnected(b)
    assert svc.documents == {} and svc.client_documents == {} and svc.client_cursors == {}


def test_without_a_distributed_broker_documents_are_not_routed():
    from snorky_sync.brokers.local import LocalBroker
    svc = CursorsService("x")
    svc.use_broker(LocalBroker())
    assert svc.routed is None  # (across processes: tests/cluster/test_cursors_outage.py, ...)

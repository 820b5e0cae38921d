"""Service.join_group / broadcast_group / shared, in process and between two
"processes" linked by a broker pair (tests/cluster/test_poll_page.py runs them
between real gunicorn workers over Redis)."""
import pytest

from snorky_sync import RPCService, ServiceRegistry, rpc_command
from support.fakes import FakeClient, LinkedBroker, rpc


class Room(RPCService):
    @rpc_command
    def enter(self, req, room):
        self.join_group(req.client, room)

    @rpc_command
    def say(self, req, room, text):
        return self.broadcast_group(room, {"type": "said", "text": text})

    def client_disconnected(self, client):  # no super(): it still leaves its groups
        self.forgotten = client


def two_processes():
    a, b = LinkedBroker(), LinkedBroker()
    a.peer, b.peer = b, a
    return Room("room"), Room("room"), a, b


def test_a_broadcast_reaches_the_members_of_both_processes_and_no_one_else():
    room_a, room_b, broker_a, broker_b = two_processes()
    ServiceRegistry([room_a], broker=broker_a)
    ServiceRegistry([room_b], broker=broker_b)
    x, y, z = FakeClient(), FakeClient(), FakeClient()
    rpc(room_a, x, "enter", {"room": "r1"})
    rpc(room_b, y, "enter", {"room": "r1"})
    rpc(room_b, z, "enter", {"room": {"other": 1}})
    assert rpc(room_b, z, "say", {"room": "r1", "text": "hi"})["data"] == 1  # y, here
    assert x.pop_messages() == [{"type": "said", "text": "hi"}]
    assert y.pop_messages() == [{"type": "said", "text": "hi"}]
    assert z.frames == []
    # a group only B holds, broadcast from A; and one nobody holds
    rpc(room_a, x, "say", {"room": {"other": 1}, "text": "yo"})
    assert z.pop_messages() == [{"type": "said", "text": "yo"}]
    rpc(room_a, x, "say", {"room": "empty", "text": "?"})
    assert x.frames == [] and y.frames == []


def test_a_client_that_disconnects_leaves_its_groups_and_the_process_its_topics():
    room_a, room_b, broker_a, broker_b = two_processes()
    registry = ServiceRegistry([room_a], broker=broker_a)
    ServiceRegistry([room_b], broker=broker_b)
    x, y = FakeClient(), FakeClient()
    rpc(room_a, x, "enter", {"room": "r1"})
    rpc(room_a, x, "enter", {"room": "r2"})
    assert sorted(room_a.groups_of(x)) == ["r1", "r2"]
    assert len(broker_a.wanted) == 2
    registry.client_disconnected(x)
    assert room_a.forgotten is x  # the override ran
    assert room_a.groups_of(x) == [] and room_a.group_members("r1") == []
    assert broker_a.wanted == {}
    rpc(room_b, y, "say", {"room": "r1", "text": "hi"})
    assert x.frames == []


def test_in_one_process_without_a_broker():
    room = Room("room")
    ServiceRegistry([room])
    x, y = FakeClient(), FakeClient()
    rpc(room, x, "enter", {"room": "r"})
    assert room.join_group(x, "r") is False
    assert rpc(room, y, "say", {"room": "r", "text": "a"})["data"] == 1
    assert x.pop_messages() == [{"type": "said", "text": "a"}]
    assert room.leave_group(x, "r") is True and room.leave_group(x, "r") is False
    assert rpc(room, y, "say", {"room": "r", "text": "b"})["data"] == 0


def test_limits():
    room = Room("room")
    room.max_groups_per_client = 2
    x = FakeClient()
    assert rpc(room, x, "enter", {"room": "x" * 2000})["message"] == "Group name too long"
    rpc(room, x, "enter", {"room": 1})
    rpc(room, x, "enter", {"room": 2})
    assert rpc(room, x, "enter", {"room": 3})["message"] == "Too many groups"
    assert sorted(room.groups_of(x)) == [1, 2]


def test_shared_state_in_process():
    room = Room("room")
    shared = room.shared
    assert shared.get("votes") == {}
    assert shared.incr("votes", "a") == 1
    assert shared.incr("votes", "a", by=2) == 3
    shared.set("votes", "who", {"name": "ann"})
    got = shared.get("votes")
    assert got == {"a": 3, "who": {"name": "ann"}}
    got["a"] = 99  # a copy
    assert shared.get("votes")["a"] == 3
    shared.delete("votes", "who")
    assert shared.get("votes") == {"a": 3}
    shared.delete("votes")
    assert shared.get("votes") == {}
    with pytest.raises(TypeError):
        shared.incr("votes", "a", by="1")


def test_two_services_of_one_name_in_two_registries_share_a_broker():
    """A frontend and a backend registry each with a "calc" (tests/integration/testapp.py):
    mounting both on one distributed broker worked before groups and must still; the
    group routing is installed once a service uses groups."""
    a, b = LinkedBroker(), LinkedBroker()
    a.peer, b.peer = b, a
    front, back = Room("calc"), Room("calc")
    ServiceRegistry([front], broker=a)
    ServiceRegistry([back], broker=a)  # raised: family 'group:calc' already has a handler
    ServiceRegistry([Room("calc")], broker=b)
    x, y = FakeClient(), FakeClient()
    rpc(front, x, "enter", {"room": "r"})
    assert rpc(front, y, "say", {"room": "r", "text": "hi"})["data"] == 1
    assert x.pop_messages() == [{"type": "said", "text": "hi"}]

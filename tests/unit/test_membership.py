"""Membership (snorky_sync/services/membership.py): the one bookkeeping of
clients in keyed sets behind Service groups, PubSub, Chat and Cursors, and
the broker interest it keeps (a key's topic wanted while it has a member
here).  Between real processes: tests/cluster, tests/security/test_redis_routing.py."""
import pytest

from snorky_sync import RPCService, ServiceRegistry, rpc_command
from snorky_sync.services.base import RPCError
from snorky_sync.services.chat import ChatService
from snorky_sync.services.cursors import CursorsService
from snorky_sync.services.membership import Membership
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient, LinkedBroker, rpc


class Room(RPCService):
    @rpc_command
    def enter(self, req, room):
        self.join_group(req.client, room)

    @rpc_command
    def exit(self, req, room):
        self.leave_group(req.client, room)


# service, its membership, join (command, params), leave (command, params)
CASES = {
    "groups": (lambda: Room("s"), lambda s: s._group_table(),
               ("enter", {"room": "k"}), ("exit", {"room": "k"})),
    "pubsub": (lambda: PubSubService("s"), lambda s: s.subscribed,
               ("subscribe", {"channel": "k"}), ("unsubscribe", {"channel": "k"})),
    "chat": (lambda: ChatService("s"), lambda s: s.joined,
             ("join", {"channel": "k"}), ("leave", {"channel": "k"})),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_key_is_wanted_from_its_first_member_here_until_its_last_one_leaves(case):
    make, membership, join, leave = CASES[case]
    service, broker = make(), LinkedBroker()
    registry = ServiceRegistry([service], broker=broker)
    x, y = FakeClient("x"), FakeClient("y")
    assert rpc(service, x, *join).get("type") == "response"
    assert rpc(service, y, *join).get("type") == "response"
    (topic,) = [t for t in broker.wanted if ":s:" in t]
    assert broker.wanted[topic] == 1 and topic in broker.handlers  # once, not per member
    assert list(membership(service).clients("k")) == [x, y]
    assert rpc(service, x, *leave).get("type") == "response"
    assert topic in broker.wanted                                   # y is still here
    registry.client_disconnected(y)
    assert topic not in broker.wanted and topic not in broker.handlers
    assert membership(service).members == {} and membership(service).of_client == {}


def test_the_built_in_services_keep_their_error_texts():
    pubsub, chat, cursors = PubSubService("p"), ChatService("c"), CursorsService("d")
    pubsub.max_subscriptions = chat.max_channels = cursors.max_documents = 1
    c = FakeClient("ann")
    for service, join, name, already, too_many in (
            (pubsub, "subscribe", "channel", "Already subscribed", "Too many subscriptions"),
            (chat, "join", "channel", "Already joined", "Too many channels"),
            (cursors, "join", "document", "Already joined", "Too many documents")):
        rpc(service, c, join, {name: "a"})
        assert rpc(service, c, join, {name: "a"})["message"] == already
        assert rpc(service, c, join, {name: "b"})["message"] == too_many
    assert rpc(pubsub, c, "unsubscribe", {"channel": "b"})["message"] == "Not subscribed"
    assert rpc(chat, c, "leave", {"channel": "b"})["message"] == "Not joined"
    assert rpc(cursors, c, "leave", {"document": "b"})["message"] == "Not joined"
    assert pubsub.subscriptions == {c: {"a"}} and list(pubsub.subscribers) == ["a"]
    assert chat.client_channels == {c: {"a"}} and cursors.client_documents == {c: {"a"}}


def test_route_wants_the_keys_that_have_members_already_and_is_idempotent():
    service, broker = Room("r"), LinkedBroker()
    members = Membership(service, "max_groups_per_client", "Too many groups")
    service.broker = broker
    c = FakeClient()
    assert members.add(c, "early") is True and members.add(c, "early") is False
    members.route(broker, "group:r", members.deliver)
    assert list(broker.wanted) == [members.topic("early")]
    members.route(broker, "group:r", members.deliver)  # the same route again: nothing
    assert broker.wanted == {members.topic("early"): 1}
    service.max_groups_per_client = 1  # read at every add
    with pytest.raises(RPCError, match="Too many groups"):
        members.add(c, "late")
    assert members.drop(c, "late") is False and members.drop_all(c) == ["early"]
    assert broker.wanted == {}


def test_a_frame_published_for_a_key_reaches_the_members_of_the_other_process_only():
    a, b = Room("r"), Room("r")
    broker_a, broker_b = LinkedBroker(), LinkedBroker()
    broker_a.peer, broker_b.peer = broker_b, broker_a
    ServiceRegistry([a], broker=broker_a)
    ServiceRegistry([b], broker=broker_b)
    x, y = FakeClient(), FakeClient()
    a.join_group(x, "k")
    b.join_group(y, "k")
    b.join_group(y, "other")
    assert a.broadcast_group("k", {"n": 1}) == 1
    a.broadcast_group("other", {"n": 2})
    assert x.pop_messages() == [{"n": 1}] and y.pop_messages() == [{"n": 1}, {"n": 2}]


def test_a_chat_hook_that_raises_leaves_the_connection_not_joined():
    class Flaky(ChatService):
        fail = True

        def send_presence(self, channel, client, status):
            if self.fail:
                raise RuntimeError("hook failed")
            super().send_presence(channel, client, status)

    chat, broker = Flaky("c"), LinkedBroker()
    registry = ServiceRegistry([chat], broker=broker)
    c = FakeClient("ann")
    assert rpc(chat, c, "join", {"channel": "a"})["type"] == "error"
    assert chat.client_channels == {} and not [t for t in broker.wanted if "chatmsg" in t]
    chat.fail = False
    assert rpc(chat, c, "join", {"channel": "a"})["data"] == {"members": ["ann"]}
    registry.client_disconnected(c)
    assert chat.client_channels == {} and chat.channels == {}

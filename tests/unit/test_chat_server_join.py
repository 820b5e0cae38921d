"""Chat's server-side joins (issue #24 item 2): control.subscribe /
unsubscribe / channels with ``service: "chat"``, and ChatService.connect_channels,
with fake clients; another process through a (linked) broker.  Two gunicorn
workers and a real redis-server: tests/cluster/test_control_subscribe.py."""

import pytest

from snorky_sync.services.chat import ChatService
from snorky_sync.services.namespaces import Namespace
from support.fakes import app_process, connect_to, control_call, linked_pair, rpc


class Rooms(ChatService):
    """Personal channels on; ``staff/*`` for alice only; namespace ``locked:`` read by nobody."""

    def __init__(self, name="chat", **kw):
        super().__init__(name, personal_channels=True,
                         namespaces={"locked": Namespace(subscribe="nobody")}, **kw)

    def can_join(self, client, channel):
        return not str(channel).startswith("staff/") or client.identity == "alice"


def process(broker=None, chat=None):
    return app_process(chat or Rooms(), broker)


connect = connect_to
call = control_call


def kinds(client):
    return [(m["type"], m.get("from", m.get("members")), m.get("status")) for m in client.pop_messages("chat")]


def two_processes():
    broker_a, broker_b = linked_pair()
    a, b = process(broker_a), process(broker_b)
    for broker in (broker_a, broker_b):
        for listener in broker.listeners:
            listener.broker_connected()
    return a, b


def test_server_join_tells_the_page_and_the_members_as_a_join_does():
    proc = process()
    bob = connect(proc, "bob")
    rpc(proc.chat, bob, "join", {"channel": "lobby"})
    pages = [connect(proc, "u42") for _ in range(2)]
    answer = call(proc, "subscribe", identity="u42", service="chat", channel="lobby")
    assert answer["data"] == {"subscribed": 2, "refused": 0, "processes": 1}
    first = pages[0].pop_messages("chat")
    assert first == [{"type": "subscribed", "channel": "lobby", "members": ["bob", "u42"]}]
    assert pages[1].pop_messages("chat") == first  # one identity: members alike
    # bob: one 'joined' for the identity (0.1's presence), however many connections
    assert kinds(bob) == [("presence", "u42", "joined")]
    # a member now: sends, receives, reads like a page that joined itself
    rpc(proc.chat, bob, "send", {"channel": "lobby", "body": "hi"})
    assert [m["body"] for m in pages[0].pop_messages("chat")] == ["hi"]
    assert rpc(proc.chat, pages[1], "send", {"channel": "lobby", "body": "yo"})["type"] == "response"
    assert rpc(proc.chat, pages[1], "join", {"channel": "lobby"})["message"] == "Already joined"
    # already joined: not counted, not told twice
    assert call(proc, "subscribe", identity="u42", service="chat", channel="lobby")["data"]["subscribed"] == 0
    assert call(proc, "channels", service="chat")["data"] == {
        "channels": [{"channel": "lobby", "subscribers": 3}]}
    here, = call(proc, "connections", service="chat")["data"]["processes"]
    assert [c["channels"] for c in here["clients"]] == [["lobby"]] * 3
    for c in (bob, *pages):
        c.pop_messages()
    # unsubscribe: each page told, bob hears 'left' once the last connection is out
    answer = call(proc, "unsubscribe", identity="u42", service="chat", channel="lobby")
    assert answer["data"] == {"unsubscribed": 2, "processes": 1}
    for page in pages:
        assert page.pop_messages("chat") == [{"type": "unsubscribed", "channel": "lobby"}]
    assert kinds(bob) == [("presence", "u42", "left")]
    rpc(proc.chat, bob, "send", {"channel": "lobby", "body": "gone?"})
    assert pages[0].pop_messages("chat") == []
    assert rpc(proc.chat, pages[0], "leave", {"channel": "lobby"})["message"] == "Not joined"


@pytest.mark.parametrize("channel", ["dm#alice,bob", "staff/ops", "locked:x"])
def test_the_read_authorization_of_a_join_refuses_it(channel):
    proc = process()
    carol, anon = connect(proc, "carol"), connect(proc, None)
    member = connect(proc, "alice")
    if channel != "locked:x":
        rpc(proc.chat, member, "join", {"channel": channel})
    answer = call(proc, "subscribe", identity="carol", service="chat", channel=channel)
    assert answer["data"] == {"subscribed": 0, "refused": 1, "processes": 1}
    assert carol.pop_messages("chat") == [] and member.pop_messages("chat") == []
    assert carol not in proc.chat.client_channels
    # no identity: Not authenticated, refused likewise (the connection is found by identity None)
    assert call(proc, "subscribe", identity=None, service="chat", channel="open")["message"] == \
        "Invalid identity"
    assert anon.pop_messages("chat") == []


def test_presence_with_metadata_counts_a_server_joined_connection():
    proc = process(chat=Rooms(presence=True))
    watcher = connect(proc, "w")
    rpc(proc.chat, watcher, "join", {"channel": "r", "presence": True})
    page = connect(proc, "u42")
    call(proc, "subscribe", identity="u42", service="chat", channel="r")
    changes = [(m["event"], m["identity"], m["meta"]) for m in watcher.pop_messages("chat")
               if m["type"] == "presenceChange"]
    assert changes == [("join", "u42", None)]
    assert rpc(proc.chat, page, "presenceStats", {"channel": "r"})["data"] == {"clients": 2, "users": 2}
    assert rpc(proc.chat, page, "updatePresence", {"channel": "r", "meta": "here"})["data"] is None


def test_connect_channels_joins_as_the_page_connects():
    class Inboxes(Rooms):
        def connect_channels(self, client):
            return [f"inbox#{client.identity}", "staff/ops", "lobby"]

    proc = process(chat=Inboxes())
    alice = connect(proc, "alice")
    assert [m["channel"] for m in alice.pop_messages("chat")] == ["inbox#alice", "staff/ops", "lobby"]
    bob = connect(proc, "bob")  # staff/ops refused (can_join), skipped
    assert bob.pop_messages("chat") == [{"type": "subscribed", "channel": "inbox#bob", "members": ["bob"]},
                                        {"type": "subscribed", "channel": "lobby",
                                         "members": ["alice", "bob"]}]
    assert kinds(alice) == [("presence", "bob", "joined")]
    proc.frontend.client_disconnected(bob)
    assert kinds(alice) == [("presence", "bob", "left")]
    assert not proc.chat.serves(bob)
    # a connection gone is not joined
    assert call(proc, "subscribe", identity="bob", service="chat", channel="x")["data"]["subscribed"] == 0


def test_server_join_and_leave_reach_the_other_process():
    a, b = two_processes()
    member = connect(b, "bob")
    rpc(b.chat, member, "join", {"channel": "room"})
    here, there = connect(a, "u42"), connect(b, "u42")
    answer = call(a, "subscribe", identity="u42", service="chat", channel="room")
    assert answer["data"] == {"subscribed": 2, "refused": 0, "processes": 2}
    # the members on every process need Redis (Chat's identity membership is routed there:
    # tests/cluster/test_chat_server_join.py); with these linked brokers each process knows its own
    for page, members in ((here, ["u42"]), (there, ["bob", "u42"])):
        told, = page.pop_messages("chat")
        assert (told["type"], told["channel"], sorted(told["members"])) == ("subscribed", "room", members)
    assert kinds(member) == [("presence", "u42", "joined")]  # once, though on both processes
    rpc(b.chat, member, "send", {"channel": "room", "body": "hello"})
    assert [m["body"] for m in here.pop_messages("chat")] == ["hello"]
    assert [m["body"] for m in there.pop_messages("chat")] == ["hello"]
    assert call(b, "channels", service="chat")["data"] == {"channels": [{"channel": "room", "subscribers": 3}]}
    answer = call(b, "unsubscribe", identity="u42", service="chat", channel="room")
    assert answer["data"] == {"unsubscribed": 2, "processes": 2}
    assert here.pop_messages("chat") == there.pop_messages("chat") == [
        {"type": "unsubscribed", "channel": "room"}]
    assert kinds(member) == [("presence", "u42", "left")]

"""PubSub and PubSubBackend (protocol.md §3), with fake clients."""
import pytest

from snorky_sync.services.pubsub import PubSubBackend, PubSubService
from support.fakes import FakeClient, rpc


@pytest.fixture
def pubsub():
    return PubSubService("pubsub")


def test_subscribe_publish_unsubscribe(pubsub):
    a, b, c = FakeClient(), FakeClient(), FakeClient()
    for x in (a, b):
        assert rpc(pubsub, x, "subscribe", {"channel": "news"}) == {"type": "response", "callId": 1, "data": None}
    pubsub.process_message_from(a, {"command": "publish", "params": {"channel": "news", "message": {"t": 1}}, "callId": 2})
    assert a.pop_messages() == [
        {"type": "message", "channel": "news", "message": {"t": 1}},
        {"type": "response", "callId": 2, "data": None}]
    assert b.pop_messages() == [{"type": "message", "channel": "news", "message": {"t": 1}}]
    assert c.frames == []
    rpc(pubsub, c, "publish", {"channel": "news", "message": 5})  # publisher not subscribed
    assert b.pop_messages() == [{"type": "message", "channel": "news", "message": 5}]
    assert rpc(pubsub, b, "unsubscribe", {"channel": "news"})["type"] == "response"
    rpc(pubsub, a, "publish", {"channel": "news", "message": 6})
    assert b.frames == []


def test_errors(pubsub):
    a = FakeClient()
    rpc(pubsub, a, "subscribe", {"channel": "x"})
    assert rpc(pubsub, a, "subscribe", {"channel": "x"})["message"] == "Already subscribed"
    assert rpc(pubsub, a, "unsubscribe", {"channel": "y"})["message"] == "Not subscribed"
    assert rpc(pubsub, a, "publish", {"channel": "x"})["message"] == "Invalid params"


@pytest.mark.parametrize("channel,same,different", [
    ({"room": 1, "kind": "a"}, {"kind": "a", "room": 1}, {"room": 1}),
    ([1, "a"], [1, "a"], ["a", 1]),
    (1, 1, True),
    (None, None, "null"),
    ("1", "1", 1),
])
def test_channels_are_any_json_compared_by_value(pubsub, channel, same, different):
    a, b = FakeClient(), FakeClient()
    rpc(pubsub, a, "subscribe", {"channel": channel})
    rpc(pubsub, b, "publish", {"channel": same, "message": "hit"})
    assert a.pop_messages() == [{"type": "message", "channel": same, "message": "hit"}]
    rpc(pubsub, b, "publish", {"channel": different, "message": "miss"})
    assert a.frames == []


def test_can_publish_hook(pubsub):
    class Closed(PubSubService):
        def can_publish(self, client, channel):
            return channel == "open"
    s = Closed("p")
    a = FakeClient()
    rpc(s, a, "subscribe", {"channel": "c"})
    assert rpc(s, a, "publish", {"channel": "c", "message": 1})["message"] == "Not authorized"
    assert a.frames == []
    assert rpc(s, a, "publish", {"channel": "open", "message": 1})["type"] == "response"


def test_disconnect_drops_every_subscription(pubsub):
    a, b = FakeClient(), FakeClient()
    for ch in ("x", "y", {"z": 1}):
        rpc(pubsub, a, "subscribe", {"channel": ch})
    rpc(pubsub, b, "subscribe", {"channel": "x"})
    pubsub.client_disconnected(a)
    assert a not in pubsub.subscriptions
    assert list(pubsub.subscribers) == ["x"]
    pubsub.client_disconnected(b)
    assert pubsub.subscribers == {} and pubsub.subscriptions == {}
    pubsub.client_disconnected(FakeClient())  # never subscribed: no error


def test_backend_publishes_without_the_hook():
    class Closed(PubSubService):
        def can_publish(self, client, channel):
            return False
    front = Closed("pubsub")
    back = PubSubBackend("pubsub_backend", front)
    a, server = FakeClient(), FakeClient()
    rpc(front, a, "subscribe", {"channel": ["list", "channel"]})
    assert rpc(back, server, "publish", {"channel": ["list", "channel"], "message": "m"}) == {
        "type": "response", "callId": 1, "data": None}
    assert a.pop_messages() == [{"type": "message", "channel": ["list", "channel"], "message": "m"}]
    assert server.frames == []


def test_fan_out_encodes_once(pubsub):
    clients = [FakeClient() for _ in range(50)]
    for c in clients:
        rpc(pubsub, c, "subscribe", {"channel": "all"})
    pubsub.do_publish("all", "x" * 200)
    frames = [c.frames[-1] for c in clients]
    assert all(f is frames[0] for f in frames)


def test_limits():
    class Small(PubSubService):
        max_subscriptions = 3
        max_channel_size = 20
    s = Small("p")
    a = FakeClient()
    for i in range(3):
        rpc(s, a, "subscribe", {"channel": i})
    assert rpc(s, a, "subscribe", {"channel": 99})["message"] == "Too many subscriptions"
    rpc(s, a, "unsubscribe", {"channel": 0})
    assert rpc(s, a, "subscribe", {"channel": 99})["type"] == "response"
    b = FakeClient()
    assert rpc(s, b, "subscribe", {"channel": "x" * 21})["message"] == "Channel too long"
    assert rpc(s, b, "subscribe", {"channel": {"k": "x" * 20}})["message"] == "Channel too long"
    assert rpc(s, b, "publish", {"channel": "x" * 21, "message": 1})["message"] == "Channel too long"
    assert rpc(s, b, "subscribe", {"channel": "x" * 20})["type"] == "response"

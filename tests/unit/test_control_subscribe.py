"""ControlService.subscribe / unsubscribe / channels and PubSubService's
server-side subscriptions (issue #24 item 2) with fake clients: this process
through the app's Connections and registries, another one through a
(linked) broker; connect_channels (subscribed as the page connects)."""

import pytest

from snorky_sync.registry import ServiceRegistry
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient, LinkedBroker, app_process, connect_to, control_call, linked_pair, rpc


class Teams(PubSubService):
    """Personal channels on; ``team-*`` only for identities starting with the team's letter."""

    def __init__(self, name="pubsub", **kw):
        super().__init__(name, personal_channels=True, **kw)

    def can_subscribe(self, client, channel):
        if isinstance(channel, str) and channel.startswith("team-"):
            return str(client.identity).startswith(channel[5:])
        return True


def process(broker=None, pubsub=None):
    return app_process(pubsub or Teams(), broker)


connect = connect_to
call = control_call


def disconnect(proc, client):
    proc.frontend.client_disconnected(client)
    proc.connections.untrack(client, client.identity)


def publish(proc, channel, message):
    proc.pubsub.do_publish(channel, message)  # as the backend does (no read/write hook)


def two_processes():
    broker_a, broker_b = linked_pair()
    return process(broker_a), process(broker_b)


def test_subscribe_every_connection_of_the_identity_and_tell_each_page():
    proc = process()
    mine = [connect(proc, "u42") for _ in range(2)]
    other = connect(proc, "u7")
    answer = call(proc, "subscribe", identity="u42", service="pubsub", channel="news-x")
    assert answer["data"] == {"subscribed": 2, "refused": 0, "processes": 1}
    for c in mine:
        assert c.pop_messages("pubsub") == [{"type": "subscribed", "channel": "news-x"}]
    publish(proc, "news-x", "hello")
    for c in mine:
        assert c.pop_messages("pubsub") == [{"type": "message", "channel": "news-x", "message": "hello"}]
    assert other.pop_messages("pubsub") == []
    # already subscribed: counted, not told twice
    assert call(proc, "subscribe", identity="u42", service="pubsub", channel="news-x")["data"] == {
        "subscribed": 0, "refused": 0, "processes": 1}
    assert mine[0].pop_messages("pubsub") == []


def test_unsubscribe_stops_the_messages_and_tells_the_page():
    proc = process()
    page = connect(proc, "u42")
    rpc(proc.pubsub, page, "subscribe", {"channel": {"room": 1}})  # the page's own subscription
    answer = call(proc, "unsubscribe", identity="u42", service="pubsub", channel={"room": 1})
    assert answer["data"] == {"unsubscribed": 1, "processes": 1}
    assert page.pop_messages("pubsub") == [{"type": "unsubscribed", "channel": {"room": 1}}]
    publish(proc, {"room": 1}, "gone")
    assert page.pop_messages("pubsub") == []
    assert proc.pubsub.subscribers == {} and proc.pubsub.subscriptions == {}
    assert call(proc, "unsubscribe", identity="u42", service="pubsub",
                channel={"room": 1})["data"]["unsubscribed"] == 0


@pytest.mark.parametrize("channel", ["dialog#alice,bob", "team-b"])
def test_read_authorization_refuses_a_server_subscribe(channel):
    proc = process()
    alice = connect(proc, "alice")
    answer = call(proc, "subscribe", identity="alice", service="pubsub", channel=channel)
    if channel == "team-b":  # can_subscribe refuses alice
        assert answer["data"] == {"subscribed": 0, "refused": 1, "processes": 1}
        assert alice.pop_messages("pubsub") == []
        publish(proc, channel, "secret")
        assert alice.pop_messages("pubsub") == [] and proc.pubsub.subscribers == {}
    else:  # alice is listed
        assert answer["data"]["subscribed"] == 1
    carol = connect(proc, "carol")  # listed nowhere: refused by the personal channel too
    answer = call(proc, "subscribe", identity="carol", service="pubsub", channel="dialog#alice,bob")
    assert answer["data"] == {"subscribed": 0, "refused": 1, "processes": 1}
    assert carol.pop_messages("pubsub") == []


@pytest.mark.parametrize("command", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("params,error", [
    ({"service": "pubsub", "channel": "c"}, "Invalid params"),
    ({"identity": None, "service": "pubsub", "channel": "c"}, "Invalid identity"),
    ({"identity": "u", "service": "nope", "channel": "c"}, "Unknown service"),
    ({"identity": "u", "service": ["pubsub"], "channel": "c"}, "Unknown service"),
    ({"identity": "u", "service": "pubsub", "channel": "x" * 2000}, "Channel too long"),
])
def test_bad_params_are_refused_before_any_process_acts(command, params, error):
    broker = LinkedBroker()
    proc = process(broker)
    page = connect(proc, "u")
    answer = rpc(proc.control, FakeClient(), command, params)
    assert answer["type"] == "error" and answer["message"] == error, answer
    assert broker.published == [] and page.pop_messages("pubsub") == []


def test_a_connection_gone_is_not_subscribed():
    proc = process()
    page = connect(proc, "u42")
    proc.frontend.client_disconnected(page)  # the services forgot it; still tracked until its socket closes
    assert call(proc, "subscribe", identity="u42", service="pubsub", channel="c")["data"]["subscribed"] == 0
    assert proc.pubsub.subscribers == {}


def test_a_connection_of_another_registry_is_not_subscribed():
    proc = process()
    other_registry = ServiceRegistry([PubSubService("elsewhere")])
    stranger = FakeClient("u42")  # a connection of a registry without this PubSub
    proc.connections.track(stranger)
    other_registry.client_connected(stranger)
    assert call(proc, "subscribe", identity="u42", service="pubsub", channel="c")["data"]["subscribed"] == 0
    assert proc.pubsub.subscribers == {}


def test_subscribe_and_unsubscribe_reach_the_other_process():
    a, b = two_processes()
    here, there = connect(a, "u42"), connect(b, "u42")
    bystander = connect(b, "u1")
    answer = call(a, "subscribe", identity="u42", service="pubsub", channel="alerts")
    # answered once b had subscribed its connection: both counted
    assert answer["data"] == {"subscribed": 2, "refused": 0, "processes": 2}
    assert there.pop_messages("pubsub") == here.pop_messages("pubsub") == [
        {"type": "subscribed", "channel": "alerts"}]
    publish(a, "alerts", 1)
    assert there.pop_messages("pubsub") == here.pop_messages("pubsub") == [
        {"type": "message", "channel": "alerts", "message": 1}]
    assert bystander.pop_messages("pubsub") == []
    answer = call(b, "unsubscribe", identity="u42", service="pubsub", channel="alerts")
    assert answer["data"] == {"unsubscribed": 2, "processes": 2}
    publish(b, "alerts", 2)
    assert there.pop_messages("pubsub") == here.pop_messages("pubsub") == [
        {"type": "unsubscribed", "channel": "alerts"}]
    assert a.control._asking == {} and b.control._asking == {}


def test_a_refusal_in_the_other_process_is_counted():
    a, b = two_processes()
    connect(a, "bob"), connect(b, "bob")
    answer = call(a, "subscribe", identity="bob", service="pubsub", channel="team-a")
    assert answer["data"] == {"subscribed": 0, "refused": 2, "processes": 2}


def test_channels_sums_every_process_and_reads_the_same_from_either():
    a, b = two_processes()
    for proc, identity, channel in [(a, "u1", "x"), (a, "u2", "x"), (b, "u3", "x"),
                                    (b, "u3", {"doc": 7}), (a, "u1", "y")]:
        rpc(proc.pubsub, connect(proc, identity), "subscribe", {"channel": channel})
    expected = {"channels": [{"channel": "x", "subscribers": 3}, {"channel": "y", "subscribers": 1},
                             {"channel": {"doc": 7}, "subscribers": 1}]}
    assert call(a, "channels", service="pubsub")["data"] == expected
    assert call(b, "channels", service="pubsub")["data"] == expected
    assert call(a, "channels", service="nope")["message"] == "Unknown service"


def test_channels_of_a_lone_process():
    proc = process()
    assert call(proc, "channels", service="pubsub")["data"] == {"channels": []}
    rpc(proc.pubsub, connect(proc, "u"), "subscribe", {"channel": "z"})
    assert call(proc, "channels", service="pubsub")["data"] == {
        "channels": [{"channel": "z", "subscribers": 1}]}


def test_connections_lists_every_process_with_channels():
    """connections({service, limit}): each process's connections (identity,
    address, backlog) with their channels of the service; ``more`` counts
    those past ``limit``."""
    a, b = two_processes()
    u1, u2 = connect(a, "u1"), connect(a, {"org": 1})
    u3 = connect(b, "u3")
    for proc, client, channel in [(a, u1, "y"), (a, u1, "x"), (b, u3, {"doc": 7})]:
        rpc(proc.pubsub, client, "subscribe", {"channel": channel})
    here, there = call(a, "connections", service="pubsub")["data"]["processes"]
    assert here["origin"] == a.control.broker.origin.hex() and here["more"] == 0
    assert [(c["id"], c["identity"], c["remote"], c["channels"], c["slow"]) for c in here["clients"]] == [
        (u1.id, "u1", "fake", ["x", "y"], False), (u2.id, {"org": 1}, "fake", [], False)]
    assert [(c["identity"], c["channels"]) for c in there["clients"]] == [("u3", [{"doc": 7}])]
    # no service: no channels; limit: the oldest first, the rest counted
    (first,), = [p["clients"] for p in call(a, "connections", limit=1)["data"]["processes"][:1]]
    assert first["identity"] == "u1" and "channels" not in first
    assert call(a, "connections", limit=1)["data"]["processes"][0]["more"] == 1
    assert call(a, "connections", limit=0)["message"] == "Invalid limit"
    assert call(a, "connections", service="nope")["message"] == "Unknown service"


@pytest.mark.parametrize("history", [0, 10])
def test_connect_channels_subscribes_as_the_page_connects(history):
    class Inbox(Teams):
        def connect_channels(self, client):
            return [f"inbox#{client.identity}", "team-a", "dialog#someone,else"]

    proc = process(pubsub=Inbox(history_size=history))
    page = connect(proc, "alice")
    # the two it may read, told first; the personal channel of others skipped
    assert page.pop_messages("pubsub") == [{"type": "subscribed", "channel": "inbox#alice"},
                                          {"type": "subscribed", "channel": "team-a"}]
    publish(proc, "inbox#alice", "hi")
    got = page.pop_messages("pubsub")
    assert [(m["type"], m["channel"], m["message"]) for m in got] == [("message", "inbox#alice", "hi")]
    assert sorted(proc.pubsub.subscribers) == ["inbox#alice", "team-a"]
    disconnect(proc, page)
    assert proc.pubsub.subscribers == {} and proc.pubsub.connected == set()


def test_a_subclass_overriding_client_connected_the_0_1_way_stays_reachable():
    """0.1's client_connected did nothing, so a 0.1 subclass overrides it
    without super(): its connections still get their connect_channels and
    are reached by control.subscribe."""
    class Old(PubSubService):
        def client_connected(self, client):
            self.seen.append(client.identity)

        def connect_channels(self, client):
            return ["welcome"]
    old = Old("pubsub")
    old.seen = []
    proc = process(pubsub=old)
    client = connect(proc, "u1")
    assert old.seen == ["u1"]
    assert old.serves(client) and old.subscribed.has(client, "welcome")
    assert call(proc, "subscribe", identity="u1", service="pubsub", channel="news")["data"]["subscribed"] == 1

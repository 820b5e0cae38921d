"""DataSyncService and DataSyncBackend over RPC (protocol.md §3), with fake clients."""
import re

import gevent
import gevent.event
import pytest

from snorky_sync.metrics import counters
from snorky_sync.services.datasync import (
    BadQuery, BroadcastDealer, DataSyncBackend, DataSyncService, FilterDealer, SimpleDealer,
    SubscriptionState,
)
from snorky_sync.services.datasync import subscriptions as subscriptions_module
from snorky_sync.services.datasync.deltas import InsertionDelta
from support.fakes import FakeClient, rpc


class AllPlayers(BroadcastDealer):
    name = "allPlayers"
    model = "Player"


class PlayersByColor(SimpleDealer):
    name = "playersByColor"
    model = "Player"

    def get_key_for_model(self, data):
        return data["color"]


class PlayersFilter(FilterDealer):
    name = "playersFilter"
    model = "Player"


class AllTeams(BroadcastDealer):   # name defaults to "AllTeams"
    model = "Team"


class ExpiryWatcher(DataSyncService):
    """Sets an event when a subscription expires (tests wait on it, never sleep)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expired = gevent.event.Event()

    def subscription_expired(self, subscription):
        self.expired.set()


def make(timeout_interval=120, cls=DataSyncService):
    front = cls("datasync", [AllPlayers, PlayersByColor, PlayersFilter(), AllTeams])
    back = DataSyncBackend("datasync_backend", front, timeout_interval=timeout_interval)
    return front, back


@pytest.fixture
def services():
    front, back = make()
    yield front, back
    for sub in list(front.subscriptions.values()):   # stop the expiry timers
        front.do_cancel_subscription(sub)


@pytest.fixture
def front(services):
    return services[0]


@pytest.fixture
def back(services):
    return services[1]


BACKEND = FakeClient(remote_address="backend")


def authorize(back, items):
    answer = rpc(back, BACKEND, "authorizeSubscription", {"items": items})
    assert answer["type"] == "response", answer
    return answer["data"]


def publish(back, *deltas):
    return rpc(back, BACKEND, "publishDeltas", {"deltas": list(deltas)})


def acquire(front, client, token, call_id=1):
    return rpc(front, client, "acquireSubscription", {"token": token}, call_id)


def ins(data, model="Player"):
    return {"type": "insert", "model": model, "data": data}


def dele(data, model="Player"):
    return {"type": "delete", "model": model, "data": data}


def upd(new, old, model="Player"):
    return {"type": "update", "model": model, "newData": new, "oldData": old}


def deltas(client):
    out = []
    for m in client.pop_messages("datasync"):
        assert m["type"] == "delta", m
        out.append(m["delta"])
    return out


def assert_empty(front):
    assert front.subscriptions == {}
    assert front.pending == {}
    assert front.subscriptions_by_client == {}
    d = front.dealers_by_name
    assert d["allPlayers"].items == {}
    assert d["AllTeams"].items == {}
    assert d["playersByColor"].items_by_model_key == {}
    assert d["playersFilter"].filters_by_item == {}


# -- authorization and acquisition ------------------------------------------------

def test_tokens_are_32_chars_of_a_z0_9_and_distinct(back):
    tokens = {authorize(back, [{"dealer": "allPlayers", "query": None}]) for _ in range(50)}
    assert len(tokens) == 50
    assert all(re.fullmatch(r"[a-z0-9]{32}", t) for t in tokens)


def test_tokens_come_from_secrets(monkeypatch, back):
    monkeypatch.setattr(subscriptions_module.secrets, "choice", lambda alphabet: "q")
    assert authorize(back, [{"dealer": "allPlayers", "query": None}]) == "q" * 32


def test_acquire_then_receive_deltas(front, back):
    a = FakeClient()
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    assert acquire(front, a, token, call_id=5) == {"type": "response", "callId": 5, "data": None}
    assert publish(back, ins({"id": 1})) == {"type": "response", "callId": 1, "data": None}
    assert a.pop() == [{"service": "datasync", "message": {"type": "delta", "delta": ins({"id": 1})}}]


def test_buffered_deltas_arrive_in_order_before_the_acquire_reply(front, back):
    a = FakeClient()
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    publish(back, ins({"id": 1}), upd({"id": 1, "v": 2}, {"id": 1}))
    publish(back, dele({"id": 1, "v": 2}), ins({"id": 9}, model="Team"), ins({"id": 2}))
    assert a.frames == []
    front.process_message_from(a, {"command": "acquireSubscription", "params": {"token": token}, "callId": 3})
    assert a.pop_messages() == [
        {"type": "delta", "delta": ins({"id": 1})},
        {"type": "delta", "delta": upd({"id": 1, "v": 2}, {"id": 1})},
        {"type": "delta", "delta": dele({"id": 1, "v": 2})},
        {"type": "delta", "delta": ins({"id": 2})},
        {"type": "response", "callId": 3, "data": None},
    ]
    assert front.subscriptions[token].buffer == []
    publish(back, ins({"id": 3}))
    assert deltas(a) == [ins({"id": 3})]


def test_acquire_errors(front, back):
    a, b = FakeClient(), FakeClient()
    for bad in (5, None, ["x"], {"t": 1}, True):
        assert acquire(front, a, bad) == {"type": "error", "callId": 1, "message": "token must be string"}
    assert acquire(front, a, "x" * 32)["message"] == "No such subscription"
    assert acquire(front, a, "")["message"] == "No such subscription"
    assert rpc(front, a, "acquireSubscription", {})["message"] == "Invalid params"
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    assert acquire(front, a, token)["type"] == "response"
    assert acquire(front, a, token)["message"] == "Subscription already acquired"
    assert acquire(front, b, token)["message"] == "Subscription already acquired"
    assert list(front.subscriptions_by_client) == [a]


def test_cancel(front, back):
    a = FakeClient()
    token = authorize(back, [{"dealer": "allPlayers", "query": None},
                             {"dealer": "playersFilter", "query": ["==", "x", 1]}])
    acquire(front, a, token)
    assert rpc(front, a, "cancelSubscription", {"token": token}) == {"type": "response", "callId": 1, "data": None}
    publish(back, ins({"x": 1}))
    assert a.frames == []
    assert_empty(front)
    assert rpc(front, a, "cancelSubscription", {"token": token})["message"] == "No such subscription"
    assert acquire(front, a, token)["message"] == "No such subscription"


def test_cancel_errors(front, back):
    a, b = FakeClient(), FakeClient()
    for bad in (5, None, ["x"]):
        assert rpc(front, a, "cancelSubscription", {"token": bad})["message"] == "token must be string"
    assert rpc(front, a, "cancelSubscription", {"token": "nope"})["message"] == "No such subscription"
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    # not acquired yet: nobody's to cancel
    assert rpc(front, a, "cancelSubscription", {"token": token})["message"] == "No such subscription"
    acquire(front, a, token)
    # acquired by another connection
    assert rpc(front, b, "cancelSubscription", {"token": token})["message"] == "No such subscription"
    publish(back, ins({"id": 1}))
    assert deltas(a) == [ins({"id": 1})]


@pytest.mark.parametrize("items,message", [
    ([{"query": None}], "Missing field 'dealer'"),
    ([{"dealer": 5, "query": None}], "dealer should be a dealer name"),
    ([{"dealer": None, "query": None}], "dealer should be a dealer name"),
    ([{"dealer": ["allPlayers"], "query": None}], "dealer should be a dealer name"),
    ([{"dealer": "nobody", "query": None}], "No such dealer"),
    ([{"dealer": "allplayers", "query": None}], "No such dealer"),
    ([{"dealer": "allPlayers"}], "Missing field 'query'"),
    ([{"dealer": "allPlayers", "query": 1}, {"dealer": "playersFilter"}], "Missing field 'query'"),
    ([{"dealer": "allPlayers", "query": 1}, {"dealer": "x"}], "No such dealer"),
    (["allPlayers"], "item must be an object"),
    ({"dealer": "allPlayers", "query": None}, "items must be a list"),
    ("allPlayers", "items must be a list"),
    ([{"dealer": "playersFilter", "query": ["like", "name", "a%"]}],
     "Invalid filter: unknown operator 'like'"),
    ([{"dealer": "playersFilter", "query": "blue"}], "Invalid filter: a filter is a non-empty list [operator, ...], got 'blue'"),
    ([{"dealer": "allPlayers", "query": None}, {"dealer": "playersByColor", "query": "red"},
      {"dealer": "playersFilter", "query": ["==", "a"]}],
     "Invalid filter: '==' takes a field and a value: ['==', field, value]"),
])
def test_authorize_errors_register_nothing(front, back, items, message):
    answer = rpc(back, BACKEND, "authorizeSubscription", {"items": items})
    assert answer == {"type": "error", "callId": 1, "message": message}
    assert_empty(front)


def test_authorize_invalid_params(back):
    assert rpc(back, BACKEND, "authorizeSubscription", {})["message"] == "Invalid params"
    assert rpc(back, BACKEND, "authorizeSubscription", {"items": [], "x": 1})["message"] == "Invalid params"


def test_an_empty_subscription_is_valid(front, back):
    a = FakeClient()
    token = authorize(back, [])
    assert acquire(front, a, token)["type"] == "response"
    publish(back, ins({"id": 1}))
    assert a.frames == []


# -- publishing -------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    ({"model": "Player", "data": {}}, "Missing field"),
    ({"type": "insert", "data": {}}, "Missing field"),
    ({"type": "insert", "model": "Player"}, "Missing field"),
    ({"type": "delete", "model": "Player"}, "Missing field"),
    ({"type": "update", "model": "Player", "newData": {}}, "Missing field"),
    ({"type": "update", "model": "Player", "oldData": {}}, "Missing field"),
    ({"type": "update", "model": "Player", "data": {}}, "Missing field"),
    ({"type": "insert", "model": 5, "data": {}}, "model must be string"),
    ({"type": "insert", "model": None, "data": {}}, "model must be string"),
    ({"type": "nope", "model": 5, "data": {}}, "model must be string"),
    ({"type": "upsert", "model": "Player", "data": {}}, "Invalid delta type"),
    ({"type": ["insert"], "model": "Player", "data": {}}, "Invalid delta type"),
    ({"type": "Insert", "model": "Player", "data": {}}, "Invalid delta type"),
    ("insert", "delta must be an object"),
])
def test_publish_errors_deliver_nothing(front, back, bad, message):
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    answer = publish(back, ins({"id": 1}), bad, ins({"id": 2}))
    assert answer == {"type": "error", "callId": 1, "message": message}
    assert a.frames == []


def test_publish_deltas_must_be_a_list(back):
    assert rpc(back, BACKEND, "publishDeltas", {"deltas": ins({})})["message"] == "deltas must be a list"
    assert rpc(back, BACKEND, "publishDeltas", {})["message"] == "Invalid params"


def test_delta_fields_are_normalized(front, back):
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    publish(back, {"type": "insert", "model": "Player", "data": 1, "extra": "dropped"})
    assert deltas(a) == [ins(1)]


def test_unknown_model_is_accepted_and_reaches_nobody(front, back):
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    assert publish(back, ins({"id": 0}, model="Ghost"), ins({"id": 1}),
                   upd({}, {}, model="Ghost"))["type"] == "response"
    assert deltas(a) == [ins({"id": 1})]


def test_updates_are_split_per_item_for_every_dealer_kind(front, back):
    red, blue, young, everyone = FakeClient(), FakeClient(), FakeClient(), FakeClient()
    acquire(front, red, authorize(back, [{"dealer": "playersByColor", "query": "red"}]))
    acquire(front, blue, authorize(back, [{"dealer": "playersByColor", "query": "blue"}]))
    acquire(front, young, authorize(back, [{"dealer": "playersFilter", "query": ["<", "age", 21]}]))
    acquire(front, everyone, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    old = {"id": 1, "color": "red", "age": 20}
    new = {"id": 1, "color": "blue", "age": 22}
    publish(back, upd(new, old))
    assert deltas(red) == [dele(old)]
    assert deltas(blue) == [ins(new)]
    assert deltas(young) == [dele(old)]
    assert deltas(everyone) == [upd(new, old)]

    newer = {"id": 1, "color": "blue", "age": 19}
    publish(back, upd(newer, new))
    assert deltas(red) == []
    assert deltas(blue) == [upd(newer, new)]
    assert deltas(young) == [ins(newer)]
    assert deltas(everyone) == [upd(newer, new)]

    publish(back, upd({"id": 1, "color": "blue", "age": 18}, newer))
    assert deltas(young) == [upd({"id": 1, "color": "blue", "age": 18}, newer)]


def test_update_split_applies_to_buffered_deltas_too(front, back):
    a = FakeClient()
    token = authorize(back, [{"dealer": "playersFilter", "query": [">=", "score", 10]}])
    publish(back, upd({"score": 10}, {"score": 9}), upd({"score": 11}, {"score": 10}),
            upd({"score": 1}, {"score": 11}))
    front.process_message_from(a, {"command": "acquireSubscription", "params": {"token": token}})
    assert a.pop_messages() == [
        {"type": "delta", "delta": ins({"score": 10})},
        {"type": "delta", "delta": upd({"score": 11}, {"score": 10})},
        {"type": "delta", "delta": dele({"score": 11})},
        {"type": "response", "data": None},
    ]


def test_a_subscription_receives_a_delta_once_per_matching_item(front, back):
    a = FakeClient()
    acquire(front, a, authorize(back, [
        {"dealer": "allPlayers", "query": None},
        {"dealer": "playersByColor", "query": "red"},
        {"dealer": "playersFilter", "query": ["==", "color", "red"]},
        {"dealer": "playersFilter", "query": ["==", "color", "blue"]},
    ]))
    publish(back, ins({"color": "red"}))
    assert deltas(a) == [ins({"color": "red"})] * 3
    publish(back, ins({"color": "blue"}))
    assert deltas(a) == [ins({"color": "blue"})] * 2
    publish(back, upd({"color": "blue"}, {"color": "red"}))
    got = deltas(a)
    assert sorted(d["type"] for d in got) == ["delete", "delete", "insert", "update"]


def test_one_delta_to_many_clients_is_encoded_once(front, back):
    clients = [FakeClient() for _ in range(3)]
    for c in clients:
        acquire(front, c, authorize(back, [{"dealer": "playersByColor", "query": "red"}]))
    publish(back, ins({"color": "red"}))
    frames = [c.frames[0] for c in clients]
    assert all(f is frames[0] for f in frames)
    assert deltas(clients[0]) == [ins({"color": "red"})]


def test_deltas_of_one_batch_keep_their_order_per_client(front, back):
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None},
                                       {"dealer": "AllTeams", "query": None}]))
    batch = [ins({"n": 0}), ins({"n": 1}, model="Team"), upd({"n": 2}, {"n": 0}),
             dele({"n": 1}, model="Team"), dele({"n": 2})]
    publish(back, *batch)
    assert deltas(a) == batch


def test_simple_dealer_keys_are_json_values_through_the_backend(front, back):
    class ByOwner(SimpleDealer):
        model = "Doc"

        def get_key_for_model(self, data):
            return data["owner"]
    front.register_dealer(ByOwner)
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "ByOwner", "query": {"org": 1, "user": "x"}}]))
    publish(back, ins({"owner": {"user": "x", "org": 1}}, model="Doc"),
            ins({"owner": {"user": "x", "org": True}}, model="Doc"),
            ins({"nope": 1}, model="Doc"))
    assert deltas(a) == [ins({"owner": {"user": "x", "org": 1}}, model="Doc")]


def test_a_failing_dealer_does_not_stop_the_others(front, back):
    class Broken(BroadcastDealer):
        model = "Player"

        def get_subscription_items_for_model(self, data):
            raise RuntimeError("boom")
    front.register_dealer(Broken)
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "Broken", "query": None},
                                       {"dealer": "allPlayers", "query": None}]))
    before = counters["datasync_dealer_errors"]
    assert publish(back, ins({"id": 1}))["type"] == "response"
    assert deltas(a) == [ins({"id": 1})]
    assert counters["datasync_dealer_errors"] == before + 1


# -- routing as data: dealers return pairs, the service dispatches by state --------------

def test_a_subscription_is_data_in_one_explicit_state(front, back):
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    sub = front.subscriptions[token]
    assert sub.service is front                               # 0.1's attribute, for its own methods
    assert sub.state is SubscriptionState.PENDING and sub.client is None
    publish(back, ins({"id": 1}))
    assert sub.buffer == [ins({"id": 1})]
    a = FakeClient()
    acquire(front, a, token)
    assert sub.state is SubscriptionState.ACQUIRED and sub.client is a and sub.buffer == []
    assert rpc(front, a, "cancelSubscription", {"token": token})["type"] == "response"
    assert sub.state is SubscriptionState.CANCELLED and sub.client is None
    assert repr(sub).startswith("<Subscription cancelled")


class PushingRedactor(BroadcastDealer):
    """A Snorky 0.1 dealer: its own deliver_delta pushes into its items' subscriptions."""
    model = "Player"

    def deliver_delta(self, delta):
        for item in list(self.get_subscription_items_for_model(delta["data"])):
            if delta["data"].get("hidden"):
                continue
            item.subscription.deliver_delta(InsertionDelta(delta["model"], {"id": delta["data"]["id"]}))
        if delta["data"].get("fail"):
            raise RuntimeError("boom after pushing")


def test_a_01_dealer_pushing_into_subscriptions_is_dispatched_by_their_state(front, back):
    front.register_dealer(PushingRedactor)
    live = authorize(back, [{"dealer": "PushingRedactor", "query": None}])
    pending = authorize(back, [{"dealer": "PushingRedactor", "query": None}])
    a = FakeClient()
    acquire(front, a, live)
    before = counters["datasync_dealer_errors"]
    publish(back, ins({"id": 1, "secret": "x"}), ins({"id": 2, "hidden": True}),
            ins({"id": 3, "fail": True}))
    assert deltas(a) == [ins({"id": 1}), ins({"id": 3})]      # what it pushed before raising too
    assert counters["datasync_dealer_errors"] == before + 1
    b = FakeClient()                                         # the pending one buffered them
    front.process_message_from(b, {"command": "acquireSubscription", "params": {"token": pending},
                                   "callId": 1})
    assert b.pop_messages("datasync") == [{"type": "delta", "delta": ins({"id": 1})},
                                          {"type": "delta", "delta": ins({"id": 3})},
                                          {"type": "response", "callId": 1, "data": None}]
    assert all(sub.inbox is None for sub in front.subscriptions.values())   # collected, closed
    rpc(front, a, "cancelSubscription", {"token": live})
    assert list(front.dm.pushing[front.dealers_by_name["PushingRedactor"]]) == [front.subscriptions[pending]]


def test_a_01_pushing_dealer_fills_pending_buffers_and_resumable_logs():
    svc = DataSyncService("datasync", [PushingRedactor], resume_window=30)
    back = DataSyncBackend("datasync_backend", svc)
    live, pending = (authorize(back, [{"dealer": "PushingRedactor", "query": None}]) for _ in range(2))
    a = FakeClient()
    acquire(svc, a, live)
    publish(back, ins({"id": 1, "secret": "x"}))
    assert a.pop_messages("datasync") == [{"type": "delta", "delta": ins({"id": 1}), "seq": 1,
                                           "epoch": svc.epoch}]
    b = FakeClient()
    svc.process_message_from(b, {"command": "acquireSubscription", "params": {"token": pending}, "callId": 1})
    assert b.pop_messages("datasync") == [
        {"type": "delta", "delta": ins({"id": 1}), "seq": 2, "epoch": svc.epoch},
        {"type": "response", "callId": 1, "data": None}]
    svc.client_disconnected(a)                               # detached: kept, not sent
    publish(back, ins({"id": 2}))
    assert svc.subscriptions[live].state is SubscriptionState.DETACHED
    c = FakeClient()
    svc.process_message_from(c, {"command": "acquireSubscription", "callId": 1,
                                 "params": {"token": live, "since": 1, "epoch": svc.epoch}})
    assert c.pop_messages("datasync") == [
        {"type": "delta", "delta": ins({"id": 2}), "seq": 3, "epoch": svc.epoch},
        {"type": "response", "callId": 1, "data": {"recovered": True, "epoch": svc.epoch}}]
    for sub in list(svc.subscriptions.values()):
        svc.do_cancel_subscription(sub)


def test_dealer_manager_routes_to_item_delta_pairs_and_sends_nothing(front, back):
    token = authorize(back, [{"dealer": "playersByColor", "query": "red"},
                             {"dealer": "allPlayers", "query": None}])
    sub = front.subscriptions[token]
    red, everything = sub.items
    moved = upd({"color": "blue"}, {"color": "red"})
    assert front.dm.route_delta(moved) == [(everything, moved), (red, dele({"color": "red"}))]
    assert sub.buffer == [] and front.dm.route_delta(ins({}, model="Nobody")) == []
    front.dm.deliver_delta(moved)                              # 0.1's name publishes (its sink)
    assert sub.buffer == [moved, dele({"color": "red"})]


def test_a_subscription_overflowing_through_three_dealers_is_cancelled_once(front, back):
    front.MAX_BUFFERED_DELTAS = 1
    token = authorize(back, [{"dealer": "allPlayers", "query": None},
                             {"dealer": "playersByColor", "query": "red"},
                             {"dealer": "playersFilter", "query": ["==", "color", "red"]}])
    before = counters["datasync_subscriptions_overflowed"]
    assert publish(back, ins({"color": "red"}))["type"] == "response"   # 3 pairs, limit 1
    assert token not in front.subscriptions
    assert counters["datasync_subscriptions_overflowed"] == before + 1
    assert_empty(front)


def test_a_route_delta_naming_an_item_of_no_subscription_is_counted_not_fatal(front, back):
    from snorky_sync.services.datasync import SubscriptionItem

    class Stray(BroadcastDealer):
        model = "Player"

        def route_delta(self, delta):
            yield SubscriptionItem("Stray", None), delta    # never authorized
            yield from super().route_delta(delta)
    front.register_dealer(Stray)
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "Stray", "query": None}]))
    before = counters["datasync_dealer_errors"]
    assert publish(back, ins({"id": 1}))["type"] == "response"
    assert deltas(a) == [ins({"id": 1})]
    assert counters["datasync_dealer_errors"] == before + 1


# -- limits, expiry, disconnect -------------------------------------------------------

def test_pending_subscriptions_are_bounded(front, back):
    front.MAX_PENDING = 2
    t1 = authorize(back, [{"dealer": "allPlayers", "query": None}])
    authorize(back, [{"dealer": "allPlayers", "query": None}])
    before = counters["datasync_authorizations_refused"]
    answer = rpc(back, BACKEND, "authorizeSubscription", {"items": [{"dealer": "allPlayers", "query": None}]})
    assert answer["message"] == "Too many pending subscriptions"
    assert counters["datasync_authorizations_refused"] == before + 1
    assert len(front.subscriptions) == 2 and len(front.dealers_by_name["allPlayers"].items) == 2
    acquire(front, FakeClient(), t1)
    assert len(front.pending) == 1
    authorize(back, [{"dealer": "allPlayers", "query": None}])


def test_max_pending_is_a_class_attribute():
    assert DataSyncService.MAX_PENDING == 10000


def test_buffer_overflow_cancels_the_pending_subscription(front, back):
    front.MAX_BUFFERED_DELTAS = 2
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    other = authorize(back, [{"dealer": "playersByColor", "query": "red"}])
    before = counters["datasync_subscriptions_overflowed"]
    publish(back, ins({"n": 1}), ins({"n": 2}))
    assert token in front.pending
    publish(back, ins({"n": 3}))
    assert token not in front.subscriptions and token not in front.pending
    assert counters["datasync_subscriptions_overflowed"] == before + 1
    assert acquire(front, FakeClient(), token)["message"] == "No such subscription"
    a = FakeClient()
    assert acquire(front, a, other)["type"] == "response"
    assert a.frames == []


def test_acquired_subscriptions_per_client_are_bounded(front, back):
    front.MAX_SUBSCRIPTIONS_PER_CLIENT = 1
    a, b = FakeClient(), FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    assert acquire(front, a, token)["message"] == "Too many subscriptions"
    assert token in front.pending
    assert acquire(front, b, token)["type"] == "response"


def test_unacquired_subscriptions_expire():
    front, back = make(timeout_interval=0.01, cls=ExpiryWatcher)
    a = FakeClient()
    token = authorize(back, [{"dealer": "allPlayers", "query": None},
                             {"dealer": "playersFilter", "query": ["==", "a", 1]}])
    publish(back, ins({"a": 1}))
    before = counters["datasync_subscriptions_expired"]
    assert front.expired.wait(timeout=5)
    assert counters["datasync_subscriptions_expired"] == before + 1
    assert_empty(front)
    assert acquire(front, a, token)["message"] == "No such subscription"
    assert a.frames == []


def test_acquiring_stops_the_expiry_timer():
    front, back = make(timeout_interval=60, cls=ExpiryWatcher)
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    timer = front.pending[token].timer
    assert timer is not None and not timer.greenlet.dead and not timer.cancelled
    acquire(front, FakeClient(), token)
    assert timer.cancelled
    timer.greenlet.join(timeout=5)  # the kill lands (a bounded wait for it)
    assert timer.greenlet.dead
    assert front.subscriptions[token].timer is None
    front.client_disconnected(next(iter(front.subscriptions_by_client)))
    assert_empty(front)


def test_expiry_never_touches_an_acquired_subscription():
    front, back = make(timeout_interval=0.01, cls=ExpiryWatcher)
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    sub = front.pending[token]
    a = FakeClient()
    acquire(front, a, token)
    front._expire(sub)          # a timer that fired anyway (e.g. it was already waiting for the lock)
    assert not front.expired.is_set()
    assert front.subscriptions[token] is sub
    publish(back, ins({"id": 1}))
    assert deltas(a) == [ins({"id": 1})]
    front.do_cancel_subscription(sub)


def test_disconnect_cancels_the_connections_subscriptions(front, back):
    a, b = FakeClient(), FakeClient()
    for items in ([{"dealer": "allPlayers", "query": None}],
                  [{"dealer": "playersByColor", "query": "red"}, {"dealer": "AllTeams", "query": 1}],
                  [{"dealer": "playersFilter", "query": [">", "age", 1]}]):
        acquire(front, a, authorize(back, items))
    acquire(front, b, authorize(back, [{"dealer": "playersByColor", "query": "red"}]))
    front.client_disconnected(a)
    assert list(front.subscriptions_by_client) == [b]
    assert len(front.subscriptions) == 1
    assert front.dealers_by_name["allPlayers"].items == {}
    assert front.dealers_by_name["playersFilter"].filters_by_item == {}
    assert len(front.dealers_by_name["playersByColor"].items_by_model_key) == 1
    publish(back, ins({"color": "red", "age": 5}))
    assert a.frames == []
    assert deltas(b) == [ins({"color": "red", "age": 5})]
    front.client_disconnected(b)
    assert_empty(front)
    front.client_disconnected(FakeClient())   # never subscribed: no error


def test_disconnect_leaves_pending_subscriptions_alone(front, back):
    a = FakeClient()
    token = authorize(back, [{"dealer": "allPlayers", "query": None}])
    front.client_disconnected(a)
    assert acquire(front, a, token)["type"] == "response"


# -- dealers registration, locking ------------------------------------------------------

def test_dealers_may_be_classes_or_instances():
    instance = PlayersFilter()
    front = DataSyncService("ds", [AllPlayers, instance])
    assert isinstance(front.dealers_by_name["allPlayers"], AllPlayers)
    assert front.dealers_by_name["playersFilter"] is instance
    assert front.dealers_by_model == {"Player": [front.dealers_by_name["allPlayers"], instance]}
    assert DataSyncService("empty").dealers_by_name == {}


def test_dealer_registration_errors():
    with pytest.raises(ValueError, match="already registered"):
        DataSyncService("ds", [AllPlayers, AllPlayers])

    class NoModel(BroadcastDealer):
        pass
    with pytest.raises(TypeError, match="model"):
        DataSyncService("ds", [NoModel])


def test_unregister_dealer_cancels_its_subscriptions(front, back):
    a = FakeClient()
    t1 = authorize(back, [{"dealer": "AllTeams", "query": None}])
    t2 = authorize(back, [{"dealer": "allPlayers", "query": None}])
    acquire(front, a, t2)
    front.unregister_dealer(front.dealers_by_name["AllTeams"])
    assert t1 not in front.subscriptions and t2 in front.subscriptions
    assert "Team" not in front.dealers_by_model
    assert rpc(back, BACKEND, "authorizeSubscription",
               {"items": [{"dealer": "AllTeams", "query": None}]})["message"] == "No such dealer"


def test_backend_delivery_takes_the_frontend_lock(front, back):
    a = FakeClient()
    acquire(front, a, authorize(back, [{"dealer": "allPlayers", "query": None}]))
    front.lock.acquire()
    try:
        g = gevent.spawn(publish, back, ins({"id": 1}))
        gevent.idle()              # g runs until it blocks on the frontend lock
        assert not g.dead
        assert a.frames == []
    finally:
        front.lock.release()
    assert g.get(timeout=5)["type"] == "response"
    assert deltas(a) == [ins({"id": 1})]


def test_backend_commands_do_not_take_the_backend_lock(front, back):
    back.lock.acquire()
    try:
        g = gevent.spawn(authorize, back, [{"dealer": "allPlayers", "query": None}])
        assert re.fullmatch(r"[a-z0-9]{32}", g.get(timeout=5))
    finally:
        back.lock.release()


def test_public_names():
    import snorky_sync.services.datasync as ds
    from snorky_sync.services.datasync import backend, dealers, deltas, filters, service, subscriptions  # noqa: F401
    from snorky_sync.services.datasync.frontend import DataSyncService as Frontend
    assert Frontend is DataSyncService
    for name in ("DataSyncService", "DataSyncBackend", "Dealer", "BroadcastDealer", "SimpleDealer",
                 "FilterDealer", "Subscription", "SubscriptionItem"):
        assert name in ds.__all__ and hasattr(ds, name)
    assert DataSyncService.rpc_commands() == ["acquireSubscription", "cancelSubscription"]
    assert DataSyncBackend.rpc_commands() == ["authorizeSubscription", "publishDeltas"]


def test_a_dealer_can_refuse_queries_before_anything_is_registered(front, back):
    added = []

    class IntsOnly(SimpleDealer):
        model = "Player"

        def get_key_for_model(self, data):
            return data["n"]

        def validate_query(self, query):
            if type(query) is not int:
                raise BadQuery("query must be an integer")

        def add_subscription_item(self, item):
            added.append(item)
            super().add_subscription_item(item)
    front.register_dealer(IntsOnly)
    answer = rpc(back, BACKEND, "authorizeSubscription", {"items": [
        {"dealer": "allPlayers", "query": None}, {"dealer": "IntsOnly", "query": "7"}]})
    assert answer["message"] == "query must be an integer"
    assert added == []
    assert_empty(front)
    authorize(back, [{"dealer": "IntsOnly", "query": 7}])
    assert len(added) == 1


def test_a_dealer_refusing_in_add_subscription_item_is_rolled_back(front, back):
    class Picky(BroadcastDealer):   # Snorky 0.1 style: refuses in add_subscription_item
        model = "Player"

        def add_subscription_item(self, item):
            if item.query != "ok":
                raise BadQuery("Picky wants 'ok'")
            super().add_subscription_item(item)
    front.register_dealer(Picky)
    answer = rpc(back, BACKEND, "authorizeSubscription", {"items": [
        {"dealer": "allPlayers", "query": None}, {"dealer": "playersByColor", "query": "red"},
        {"dealer": "Picky", "query": "no"}]})
    assert answer["message"] == "Picky wants 'ok'"
    assert_empty(front)
    assert front.dealers_by_name["Picky"].items == {}


def test_through_registries_as_the_endpoints_use_them(front, back):
    from snorky_sync import ServiceRegistry, wire
    frontend, backend = ServiceRegistry(), ServiceRegistry()
    frontend.register_service(front)
    backend.register_service(back)
    browser, server = FakeClient(), FakeClient()
    frontend.client_connected(browser)

    backend.process_message_raw(server, wire.encode({"service": "datasync_backend", "message": {
        "command": "authorizeSubscription", "callId": "a",
        "params": {"items": [{"dealer": "playersFilter", "query": ["==", "player.color", "blue"]}]}}}))
    [reply] = server.pop()
    assert reply["service"] == "datasync_backend" and reply["message"]["callId"] == "a"
    token = reply["message"]["data"]

    backend.process_message_raw(server, wire.encode({"service": "datasync_backend", "message": {
        "command": "publishDeltas", "params": {"deltas": [ins({"player": {"color": "blue"}})]}}}))
    assert server.pop() == [{"service": "datasync_backend", "message": {"type": "response", "data": None}}]

    frontend.process_message_raw(browser, wire.encode({"service": "datasync", "message": {
        "command": "acquireSubscription", "params": {"token": token}, "callId": 0}}))
    assert browser.pop() == [
        {"service": "datasync", "message": {"type": "delta", "delta": ins({"player": {"color": "blue"}})}},
        {"service": "datasync", "message": {"type": "response", "callId": 0, "data": None}},
    ]
    frontend.client_disconnected(browser)
    assert_empty(front)

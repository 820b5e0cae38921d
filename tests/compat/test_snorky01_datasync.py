"""Snorky 0.1's DataSync managers and subscriptions, used as 0.1's own tests
(snorky/tests/test_dealer_manager.py, test_subscription_manager.py,
test_subscription.py, test_datasync_service.py) and its DataSyncBackend use
them, adapted by the import prefix ``snorky_sync.`` and with recording fakes
where 0.1's tests used ``mock.Mock``.  Whatever 0.1 sent, is sent; used
without a service, a subscription says so rather than keeping deltas nobody
will ever send."""
import pytest

from compat.test_snorky01_python_api import ManualTimeouts
from support.fakes import FakeClient, rpc


class Calls:
    """A callable recording its calls (0.1's tests used ``mock.Mock``)."""

    def __init__(self, side_effect=None):
        self.calls = []
        self.side_effect = side_effect

    def __call__(self, *args):
        self.calls.append(args)
        if self.side_effect is not None:
            return self.side_effect(*args)


# -- snorky/tests/test_dealer_manager.py ---------------------------------------------------

class FakeDealer:
    def __init__(self, name, model):
        self.name = name
        self.model = model

        self.deliver_delta = Calls()
        self.add_subscription_item = Calls()
        self.remove_subscription_item = Calls()


class FakeDealerSubscription:
    def __init__(self, items):
        self.items = items


def test_dealer_manager_delivers_to_its_dealers_as_in_01():
    from snorky_sync.services.datasync.delta import InsertionDelta
    from snorky_sync.services.datasync.managers.dealer import (
        DealerManager,
        UnknownDealer,
        UnknownModelClass,
    )
    from snorky_sync.services.datasync.subscription import SubscriptionItem

    dealer1 = FakeDealer("test_dealer1", "test_model")
    dealer2 = FakeDealer("test_dealer2", "test_model")

    dm = DealerManager()
    dm.register_dealer(dealer1)
    assert dm.get_dealer("test_dealer1") is dealer1
    assert set(dm.get_dealers_for_model_class("test_model")) == {dealer1}
    dm.register_dealer(dealer2)
    assert set(dm.get_dealers_for_model_class("test_model")) == {dealer1, dealer2}
    with pytest.raises(UnknownDealer):
        dm.get_dealer("foo")

    # test_deliver_delta: each dealer of the delta's model gets it
    delta = InsertionDelta("test_model", {"id": 1})
    dm.deliver_delta(delta)
    assert dealer1.deliver_delta.calls == [(delta,)]
    assert dealer2.deliver_delta.calls == [(delta,)]

    # test_deliver_delta_without_dealer, test_deliver_delta_other_model_class
    with pytest.raises(UnknownModelClass):
        DealerManager().deliver_delta(delta)
    with pytest.raises(UnknownModelClass):
        dm.deliver_delta(InsertionDelta("unknown_model", {"id": 1}))

    # test_connect_subscription, test_disconnect_subscription
    item = SubscriptionItem("test_dealer1", 5)
    subscription = FakeDealerSubscription([item])
    dm.connect_subscription(subscription)
    assert dealer1.add_subscription_item.calls == [(item,)]
    dm.disconnect_subscription(subscription)
    assert dealer1.remove_subscription_item.calls == [(item,)]


# -- snorky/tests/test_subscription_manager.py ---------------------------------------------

class FakeManagedSubscription:
    def __init__(self):
        self.token = None

        self.got_client = Calls(side_effect=self._got_client)
        self.lost_client = Calls()

    def _got_client(self, client):
        self.client = client


def test_subscription_manager_as_in_01():
    from snorky_sync.services.datasync.managers.subscription import SubscriptionManager

    sm = SubscriptionManager()
    subscription = FakeManagedSubscription()

    # test_authorize_subscription
    token = sm.register_subscription(subscription)
    assert token is not None
    assert sm.get_subscription_with_token(token) is subscription
    assert subscription.token == token

    # test_link_to_client
    client = FakeClient()
    sm.link_subscription_to_client(sm.get_subscription_with_token(token), client)
    assert subscription.got_client.calls == [(client,)]
    assert sm.subscriptions_by_client.in_set(client, subscription)
    assert sm.subscriptions_by_client.get_set(client) == {subscription}   # 0.1's frontend read it so

    # test_unlink_from_client
    sm.unlink_subscription_from_client(subscription)
    assert subscription.lost_client.calls == [()]
    assert not sm.subscriptions_by_client.in_set(client, subscription)

    # test_remove_subscription
    sm.unregister_subscription(subscription)
    assert subscription.token is None
    assert sm.get_subscription_with_token(token) is None


# -- snorky/tests/test_subscription.py -----------------------------------------------------

class FakeService:
    def __init__(self):
        self.deliver_delta = Calls()


class FakeDelta:
    # Subscription class does not use Delta's methods or properties, just
    # passes the Delta object around.
    pass


def test_subscription_sends_through_its_service_as_in_01():
    from snorky_sync.services.datasync.subscription import Subscription, SubscriptionItem

    service = FakeService()
    client = FakeClient()

    # test_got_client
    subscription = Subscription([SubscriptionItem("test_dealer", "red")], service)
    assert subscription.service is service
    subscription.got_client(client)
    assert subscription.client is client
    assert subscription._awaited_client_buffer == []
    assert service.deliver_delta.calls == []
    subscription.lost_client()
    assert subscription.client is None

    # test_awaited_client_buffer
    delta = FakeDelta()
    subscription = Subscription([SubscriptionItem("test_dealer", "red")], service)
    subscription.deliver_delta(delta)
    subscription.got_client(client)
    assert service.deliver_delta.calls == [(client, delta)]     # arrived, untouched
    assert subscription._awaited_client_buffer == []
    subscription.deliver_delta(delta)                           # further ones directly
    assert service.deliver_delta.calls == [(client, delta), (client, delta)]
    assert subscription._awaited_client_buffer == []

    # flush_awaited_client_buffer sends too (got_client calls it)
    subscription.lost_client()
    subscription.deliver_delta(delta)
    assert subscription._awaited_client_buffer == [delta]
    subscription.client = client
    assert subscription.flush_awaited_client_buffer() is None
    assert len(service.deliver_delta.calls) == 3 and subscription._awaited_client_buffer == []


def test_a_subscription_without_a_service_refuses_to_lose_deltas():
    from snorky_sync.services.datasync.subscription import Subscription, SubscriptionItem

    subscription = Subscription([SubscriptionItem("test_dealer", "red")])
    subscription.deliver_delta(FakeDelta())                    # awaiting a client: kept
    assert len(subscription._awaited_client_buffer) == 1
    with pytest.raises(RuntimeError, match="without a service"):
        subscription.got_client(FakeClient())
    assert subscription.client is None and len(subscription._awaited_client_buffer) == 1

    bare = Subscription([SubscriptionItem("test_dealer", "red")])
    bare.got_client(FakeClient())                              # nothing to send yet
    with pytest.raises(RuntimeError, match="without a service"):
        bare.deliver_delta(FakeDelta())
    with pytest.raises(TypeError, match="deliver_delta"):
        Subscription([SubscriptionItem("test_dealer", "red")], object())


# -- snorky/tests/test_datasync_service.py, and 0.1's DataSyncBackend ------------------------

def players_by_color():
    from snorky_sync.services.datasync.dealers import SimpleDealer

    class TestDealer(SimpleDealer):
        name = "players_with_color"
        model = "Player"

        def get_key_for_model(self, model):
            return model["color"]

    return TestDealer


def alice(color, kind="insert"):
    return {"type": kind, "model": "Player", "data": {"name": "Alice", "color": color}}


def test_datasync_service_subscriptions_as_in_01():
    from snorky_sync.services.datasync.backend import DataSyncBackend
    from snorky_sync.services.datasync.frontend import DataSyncService

    time_man = ManualTimeouts()
    frontend = DataSyncService("frontend")
    backend = DataSyncBackend("backend", frontend, timeout_factory=time_man)
    frontend.register_dealer(players_by_color())
    sm = frontend.sm
    client = FakeClient()

    # test_authorize_subscription
    token = rpc(backend, FakeClient(), "authorizeSubscription",
                {"items": [{"dealer": "players_with_color", "query": "red"}]})["data"]
    subscription = sm.subscriptions_by_token[token]
    assert subscription._awaited_client_timeout is not None
    assert len(time_man.pending) == 1
    assert subscription.service is frontend       # 0.1's backend: Subscription(items, self.frontend)

    # test_delta_before, test_acquire_subscription
    assert rpc(backend, FakeClient(), "publishDeltas", {"deltas": [alice("red")]})["data"] is None
    assert client.pop_messages() == []
    client.frames.clear()
    frontend.process_message_from(client, {"command": "acquireSubscription", "params": {"token": token},
                                           "callId": 1})
    assert client.pop_messages("frontend") == [{"type": "delta", "delta": alice("red")},
                                               {"type": "response", "callId": 1, "data": None}]
    assert subscription.client is client
    assert subscription._awaited_client_timeout is None
    assert time_man.pending == []
    assert sm.subscriptions_by_client.in_set(client, subscription)

    # test_cancel_subscription
    assert rpc(frontend, client, "cancelSubscription", {"token": token})["data"] is None
    assert token not in sm.subscriptions_by_token
    assert not sm.subscriptions_by_client.in_set(client, subscription)

    # test_timeout
    expiring = rpc(backend, FakeClient(), "authorizeSubscription",
                   {"items": [{"dealer": "players_with_color", "query": "red"}]})["data"]
    time_man.process_all()
    assert expiring not in sm.subscriptions_by_token


def test_a_01_backend_publishing_through_the_dealer_manager_sends():
    """0.1's DataSyncBackend, written the 0.1 way against ``frontend.sm`` and
    ``frontend.dm`` (as a custom backend service copied from it does)."""
    from snorky_sync.services.base import RPCError, RPCService, rpc_command
    from snorky_sync.services.datasync.delta import DeletionDelta, InsertionDelta, UpdateDelta
    from snorky_sync.services.datasync.frontend import DataSyncService
    from snorky_sync.services.datasync.subscription import Subscription, SubscriptionItem
    from snorky_sync.timeout import TornadoTimeoutFactory

    class MyDataSyncBackend(RPCService):
        def __init__(self, name, frontend, timeout_interval=120, timeout_factory=None):
            super().__init__(name)
            self.frontend = frontend
            self.timeout_interval = timeout_interval
            self.timeout_factory = timeout_factory or TornadoTimeoutFactory

        @rpc_command
        def authorizeSubscription(self, req, items):
            obj_items = []
            for item in items:
                if item["dealer"] not in self.frontend.dm.dealers_by_name:
                    raise RPCError("No such dealer")
                obj_items.append(SubscriptionItem(item["dealer"], item["query"]))
            subscription = Subscription(obj_items, self.frontend)
            token = self.frontend.sm.register_subscription(subscription)
            self.frontend.dm.connect_subscription(subscription)
            subscription._awaited_client_timeout = self.timeout_factory.call_later(
                self.timeout_interval, self.frontend.do_cancel_subscription, subscription)
            return token

        @rpc_command
        def publishDeltas(self, req, deltas):
            for delta in deltas:
                if delta["type"] == "insert":
                    obj_delta = InsertionDelta(delta["model"], delta["data"])
                elif delta["type"] == "delete":
                    obj_delta = DeletionDelta(delta["model"], delta["data"])
                else:
                    obj_delta = UpdateDelta(delta["model"], delta["newData"], delta["oldData"])
                self.frontend.dm.deliver_delta(obj_delta)

    time_man = ManualTimeouts()
    frontend = DataSyncService("frontend", [players_by_color()])
    backend = MyDataSyncBackend("backend", frontend, timeout_factory=time_man)
    token = rpc(backend, FakeClient(), "authorizeSubscription",
                {"items": [{"dealer": "players_with_color", "query": "red"}]})["data"]
    assert rpc(backend, FakeClient(), "publishDeltas", {"deltas": [alice("red")]})["data"] is None

    client = FakeClient()
    frontend.process_message_from(client, {"command": "acquireSubscription", "params": {"token": token},
                                           "callId": 1})
    assert client.pop_messages("frontend") == [{"type": "delta", "delta": alice("red")},
                                               {"type": "response", "callId": 1, "data": None}]
    assert rpc(backend, FakeClient(), "publishDeltas",
               {"deltas": [alice("red", "delete"), alice("blue")]})["data"] is None
    assert client.pop_messages("frontend") == [{"type": "delta", "delta": alice("red", "delete")}]

    other = rpc(backend, FakeClient(), "authorizeSubscription",
                {"items": [{"dealer": "players_with_color", "query": "red"}]})["data"]
    time_man.process_all()                           # 0.1's timer: frontend.do_cancel_subscription
    assert frontend.sm.get_subscription_with_token(other) is None
    assert frontend.sm.get_subscription_with_token(token).client is client


def test_a_dealer_or_subscription_delivering_by_hand_sends_as_in_01():
    """0.1's Dealer.deliver_delta and Subscription.deliver_delta, called
    directly on a service's dealer and subscriptions, send (or buffer)."""
    from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
    from snorky_sync.services.datasync.delta import InsertionDelta

    frontend = DataSyncService("frontend", [players_by_color()])
    backend = DataSyncBackend("backend", frontend)
    live, waiting = (rpc(backend, FakeClient(), "authorizeSubscription",
                         {"items": [{"dealer": "players_with_color", "query": "red"}]})["data"]
                     for _ in range(2))
    client = FakeClient()
    rpc(frontend, client, "acquireSubscription", {"token": live})

    frontend.dm.get_dealer("players_with_color").deliver_delta(InsertionDelta("Player", alice("red")["data"]))
    assert client.pop_messages("frontend") == [{"type": "delta", "delta": alice("red")}]
    frontend.sm.get_subscription_with_token(live).deliver_delta(InsertionDelta("Player", {"id": 2}))
    assert client.pop_messages("frontend") == [
        {"type": "delta", "delta": {"type": "insert", "model": "Player", "data": {"id": 2}}}]
    assert frontend.sm.get_subscription_with_token(waiting)._awaited_client_buffer == [alice("red")]
    for token in (live, waiting):
        frontend.do_cancel_subscription(frontend.sm.get_subscription_with_token(token))

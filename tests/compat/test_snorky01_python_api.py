"""Snorky 0.1's public Python API, imported by its 0.1 paths (prefix ``snorky_sync.``)
and used the way 0.1's code, documentation and tests use it.  No sockets here:
tests/compat/test_snorky01_examples.py runs 0.1's examples against real servers."""
import importlib
import json

import gevent
import pytest

from support.fakes import FakeClient, rpc

# Every public name of Snorky 0.1's Python package (snorky/), by module.  The
# Django connector (snorky.backend.django*) is issue #13's, not listed here.
SNORKY_01_NAMES = {
    "": ["ServiceRegistry", "version"],
    "service_registry": ["ServiceRegistry"],
    "client": ["Client"],
    "log": ["snorky_log"],
    "types": ["PY2", "PY3", "StringTypes", "ustr", "items", "keys", "values", "is_string",
              "with_metaclass", "MultiDict", "Number"],
    "hashable": ["HashableList", "HashableDict", "make_hashable"],
    "timeout": ["TornadoTimeoutHandle", "TornadoTimeoutFactory"],
    "services.base": ["Service", "InvalidMessage", "RPCError", "ellipsis", "format_call", "Request",
                      "rpc_command", "rpc_asynchronous", "RPCMeta", "RPCService"],
    "services.pubsub": ["PubSubService", "PubSubBackend"],
    "services.chat": ["ChatService"],
    "services.cursors": ["Cursor", "CursorsService"],
    "services.messaging": ["MessagingService"],
    "services.datasync": ["DataSyncService", "DataSyncBackend"],
    "services.datasync.frontend": ["DataSyncService"],
    "services.datasync.backend": ["DataSyncBackend"],
    "services.datasync.dealers": [
        "BadQuery", "Dealer", "BroadcastDealer", "SimpleDealer", "FilterDealer", "FilterAssociation",
        "get_field", "false_on_raise", "orderable_types", "filter_eq", "filter_lt", "filter_lte",
        "filter_gt", "filter_gte", "filter_not", "filter_and", "filter_or", "operator_functions",
        "filter_matches"],
    "services.datasync.delta": ["Delta", "InsertionDelta", "UpdateDelta", "DeletionDelta"],
    "services.datasync.subscription": ["Subscription", "SubscriptionItem"],
    "services.datasync.managers.dealer": ["UnknownDealer", "UnknownModelClass", "DealerManager"],
    "services.datasync.managers.subscription": ["SubscriptionManager"],
    "backend": ["SnorkyError", "SnorkyHTTPTransport", "SnorkyBackend"],
}


@pytest.mark.parametrize("module,names", sorted(SNORKY_01_NAMES.items()))
def test_every_01_name_is_importable_by_its_01_path(module, names):
    mod = importlib.import_module("snorky_sync" + ("." + module if module else ""))
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == []


@pytest.mark.parametrize("module,equivalent", [
    ("http", "Snorky(app).backend"), ("websocket", "Snorky(app).websocket"), ("sockjs", "Snorky(app).sockjs")])
def test_tornado_request_handlers_raise_import_error_naming_the_flask_wiring(module, equivalent):
    with pytest.raises(ImportError) as exc:
        importlib.import_module(f"snorky_sync.request_handlers.{module}")
    assert equivalent in str(exc.value) and "Tornado" in str(exc.value)


def test_where_names_differ_one_is_an_alias_of_the_other():
    from snorky_sync import registry, service_registry, timeout
    from snorky_sync.backend import HTTPTransport, SnorkyHTTPTransport
    from snorky_sync.services.datasync import deltas, delta, subscription, subscriptions

    assert service_registry.ServiceRegistry is registry.ServiceRegistry
    assert SnorkyHTTPTransport is HTTPTransport
    assert delta.InsertionDelta is deltas.InsertionDelta
    assert subscription.Subscription is subscriptions.Subscription
    assert timeout.TornadoTimeoutFactory is timeout.GeventTimeoutFactory


# -- ServiceRegistry ---------------------------------------------------------------

def test_registry_constructor_registers_the_list_as_in_01():
    from snorky_sync.service_registry import ServiceRegistry
    from snorky_sync.services.pubsub import PubSubService
    from snorky_sync.services.chat import ChatService

    pubsub, chat = PubSubService("pubsub"), ChatService("chat")
    registry = ServiceRegistry([pubsub, chat])
    assert registry.registered_services == {"pubsub": pubsub, "chat": chat}
    client = FakeClient()
    registry.process_message_raw(client, json.dumps(
        {"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "c"}, "callId": 0}}))
    assert client.pop_messages("pubsub") == [{"type": "response", "callId": 0, "data": None}]
    registry.unregister_service(chat)
    assert list(registry.registered_services) == ["pubsub"]


def test_registry_refuses_what_is_not_a_list_of_services():
    from snorky_sync import ServiceRegistry
    from snorky_sync.brokers import LocalBroker
    from snorky_sync.services.pubsub import PubSubService

    with pytest.raises(TypeError, match="broker="):
        ServiceRegistry(LocalBroker())                       # the old positional broker
    with pytest.raises(TypeError, match="list of services, got PubSubService"):
        ServiceRegistry(PubSubService("p"))                  # one service, not a list
    with pytest.raises(TypeError, match="Service instance, got str"):
        ServiceRegistry(["pubsub"])
    with pytest.raises(TypeError, match="the class PubSubService"):
        ServiceRegistry([PubSubService])
    with pytest.raises(TypeError, match="wants a snorky_sync.brokers.Broker, got list"):
        ServiceRegistry(broker=[])
    registry = ServiceRegistry(broker=LocalBroker())
    assert registry.registered_services == {}


def test_wrong_kinds_of_argument_fail_loudly():
    from flask import Flask
    from snorky_sync import Snorky
    from snorky_sync.backend import SnorkyBackend, SnorkyHTTPTransport
    from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
    from snorky_sync.services.pubsub import PubSubBackend, PubSubService

    class NotADealer:
        name, model = "x", "X"

    with pytest.raises(TypeError, match="frontend is the PubSubService"):
        PubSubBackend("b", "pubsub")
    with pytest.raises(TypeError, match="frontend is the DataSyncService"):
        DataSyncBackend("b", PubSubService("p"))
    with pytest.raises(TypeError, match="Dealer class or instance, got the class NotADealer"):
        DataSyncService("d", [NotADealer])
    with pytest.raises(TypeError, match="Dealer class or instance, got NotADealer"):
        DataSyncService("d", [NotADealer()])
    with pytest.raises(TypeError, match="dealers is a list"):
        DataSyncService("d", "playersByColor")
    with pytest.raises(TypeError, match="call_later"):
        DataSyncBackend("b", DataSyncService("d"), timeout_factory=object())
    with pytest.raises(TypeError, match="transport has a send"):
        SnorkyBackend("http://localhost/backend")
    with pytest.raises(TypeError, match="dumps"):
        SnorkyBackend(SnorkyHTTPTransport("http://127.0.0.1:1/backend", "k"), "a-token-secret")
    with pytest.raises(TypeError, match="registry is a ServiceRegistry, got list"):
        Snorky(Flask("x")).websocket("/ws", [PubSubService("p")])
    with pytest.raises(TypeError, match="registry is a ServiceRegistry"):
        Snorky(Flask("x")).backend("/backend", PubSubService("p"), api_key="k" * 20)
    with pytest.raises(TypeError, match="app is a Flask application, got str"):
        Snorky("app")
    with pytest.raises(TypeError, match="service name is a string, got list"):
        PubSubService(["pubsub"])


# -- services.base -------------------------------------------------------------------

def test_rpc_service_as_01_declares_and_checks_it():
    from snorky_sync.services.base import RPCError, RPCService, Request, rpc_asynchronous, rpc_command

    class Calculator(RPCService):
        @rpc_command
        def sum(self, req, number1, number2):
            return number1 + number2

        @rpc_command
        @rpc_asynchronous
        def later(self, req):
            self.spawned = gevent.spawn(req.reply, "done")

        @rpc_command
        def fail(self, req):
            raise RPCError("Nope")

        @rpc_command
        def crash(self, req):
            raise ZeroDivisionError

    assert Calculator.rpc_commands == frozenset({"sum", "later", "fail", "crash"})
    assert "sum" in Calculator.rpc_commands
    calc, client = Calculator("calc"), FakeClient()
    assert rpc(calc, client, "sum", {"number1": 2, "number2": 3}) == {"type": "response", "callId": 1, "data": 5}
    assert rpc(calc, client, "sum", {"number1": 2})["message"] == "Invalid params"
    assert rpc(calc, client, "fail")["message"] == "Nope"
    assert rpc(calc, client, "crash")["message"] == "Internal error"
    assert rpc(calc, client, "nothing")["message"] == "Unknown command"
    calc.process_message_from(client, {"command": "later", "params": {}, "callId": 7})
    calc.spawned.join(timeout=5)  # the background reply has run
    assert client.pop_messages() == [{"type": "response", "callId": 7, "data": "done"}]

    req = Request(calc, client, {"command": "crash", "params": {}})
    req.debug = True  # 0.1: unit tests see the exception
    with pytest.raises(ZeroDivisionError):
        calc.process_request(req)
    assert Request(calc, client, {"command": "sum", "params": {"number1": 1}}).format_call() == 'sum({"number1": 1})'


def test_ellipsis_and_format_call():
    from snorky_sync.services.base import ellipsis, format_call

    assert ellipsis("abc", 5) == "abc"
    assert ellipsis("a" * 200) == "a" * 97 + "..."
    assert format_call("join", {"channel": "c"}) == 'join({"channel": "c"})'


def test_user_services_receive_hashable_messages_as_in_01():
    from snorky_sync import ServiceRegistry
    from snorky_sync.services.base import Service

    seen = {}

    class Rooms(Service):
        def process_message_from(self, client, msg):
            seen.setdefault(msg["room"], set()).add(client)   # a list as a dict key: 0.1 allowed it
            self.send_message_to(client, len(seen))

    registry, client = ServiceRegistry([Rooms("rooms")]), FakeClient()
    registry.process_message_raw(client, '{"service": "rooms", "message": {"room": ["a", {"b": 1}]}}')
    registry.process_message_raw(client, '{"service": "rooms", "message": {"room": ["a", {"b": 1}]}}')
    assert client.pop_messages("rooms") == [1, 1]
    assert list(seen) == [["a", {"b": 1}]]


def test_client_send_takes_a_whole_message():
    client = FakeClient()
    client.send({"service": "x", "message": [1, 2]})
    assert client.messages == [{"service": "x", "message": [1, 2]}]


def test_types_and_hashable_helpers():
    from snorky_sync.hashable import HashableDict, make_hashable
    from snorky_sync.types import MultiDict, is_string, with_metaclass

    d = MultiDict()
    d.add("k", 1)
    d.add("k", 2)
    d.remove("k", 1)
    assert d.get_set("k") == {2} and d.in_set("k", 2) and not d.in_set("x", 2)
    d.remove("k", 2)
    assert "k" not in d and d.get_set("k") == set()
    value = make_hashable({"a": [1, {"b": 2}]})
    assert isinstance(value, HashableDict) and hash(value) == hash(make_hashable({"a": [1, {"b": 2}]}))
    assert is_string("x") and not is_string(b"x"[0])

    class Meta(type):
        pass

    assert type(with_metaclass(Meta, object)) is Meta


# -- built-in services' 0.1 hooks ------------------------------------------------------

def test_chat_get_time_and_cursor_hook_overrides_as_in_01():
    from snorky_sync.services.base import RPCError
    from snorky_sync.services.chat import ChatService
    from snorky_sync.services.cursors import Cursor, CursorsService

    class FixedClockChat(ChatService):
        def get_time(self):
            return "2014-01-01T00:00:00+00:00"

    chat, alice, bob = FixedClockChat("chat"), FakeClient("alice"), FakeClient("bob")
    rpc(chat, alice, "join", {"channel": "c"})
    rpc(chat, bob, "join", {"channel": "c"})
    assert alice.pop_messages()[0]["timestamp"] == "2014-01-01T00:00:00+00:00"
    with chat.lock:
        chat.do_leave(bob, "c")  # 0.1's do_leave, e.g. to kick someone
    assert alice.pop_messages() == [{"type": "presence", "from": "bob", "channel": "c",
                                     "status": "left", "timestamp": "2014-01-01T00:00:00+00:00"}]

    class OneCursorEach(CursorsService):
        def check_new_cursor_allowed(self, client):   # 0.1's signature: (client)
            if self.client_cursors.get(client):
                raise RPCError("One is enough")

    cursors = OneCursorEach("cursors")
    rpc(cursors, alice, "join", {"document": "d"})
    rpc(cursors, bob, "join", {"document": "d"})
    params = {"privateHandle": 0, "document": "d", "position": 1, "status": None}
    public = rpc(cursors, alice, "createCursor", params)["data"]
    assert rpc(cursors, alice, "createCursor", dict(params, privateHandle=1))["message"] == "One is enough"
    added = bob.pop_messages()[0]
    assert added == {"type": "cursorAdded", "cursor": {
        "publicHandle": public, "document": "d", "position": 1, "status": None, "owner": "alice"}}
    cursor = cursors.documents["d"].cursors[public]
    assert isinstance(cursor, Cursor) and cursor.for_json() == added["cursor"]
    assert (cursor.private_handle, cursor.public_handle, cursor.owner) == (0, public, alice)
    cursor.position = 5
    assert cursor.for_json()["position"] == 5
    with cursors.lock:
        cursors.do_remove_cursor(alice, 0)
    assert bob.pop_messages() == [{"type": "cursorRemoved", "cursor": {"publicHandle": public, "document": "d"}}]
    assert rpc(cursors, FakeClient(), "join", {"document": "d"})["message"] == "Not authenticated"


def test_01_subclass_overriding_a_camelcase_command_replaces_it():
    from snorky_sync.services.base import rpc_command
    from snorky_sync.services.messaging import MessagingService

    class Shouting(MessagingService):
        @rpc_command
        def registerParticipant(self, req, name):           # 0.1's method name
            return MessagingService.registerParticipant(self, req, name.upper())

    svc, client = Shouting("messaging"), FakeClient()
    assert rpc(svc, client, "registerParticipant", {"name": "ann"})["type"] == "response"
    assert rpc(svc, client, "listParticipants")["data"] == ["ANN"]


# -- DataSync ------------------------------------------------------------------------------

class ManualTimeouts:
    """A timeout factory run by hand, as 0.1's tests.utils.timeout.TestTimeoutFactory."""

    class Handle:
        def __init__(self, owner, entry):
            self.owner, self.entry, self.cancelled = owner, entry, False

        def cancel(self):
            if self.cancelled:
                raise RuntimeError("Already cancelled")
            self.cancelled = True
            pending = self.owner.pending   # fired already: nothing to stop (Tornado's remove_timeout)
            pending[:] = [entry for entry in pending if entry is not self.entry]

    def __init__(self):
        self.pending = []

    def call_later(self, delay, callback, *args, **kwargs):
        entry = (delay, callback, args, kwargs)
        self.pending.append(entry)
        return self.Handle(self, entry)

    def process_all(self):
        while self.pending:
            _, callback, args, kwargs = self.pending.pop(0)
            callback(*args, **kwargs)


def test_datasync_as_01_deltas_dealers_timeouts_and_managers():
    from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
    from snorky_sync.services.datasync.dealers import Dealer, SimpleDealer
    from snorky_sync.services.datasync.delta import DeletionDelta, InsertionDelta, UpdateDelta
    from snorky_sync.services.datasync.managers.dealer import DealerManager, UnknownDealer
    from snorky_sync.services.datasync.managers.subscription import SubscriptionManager

    received = []

    class EveryPlayer(Dealer):                    # a custom 0.1 dealer, routing by itself
        name = "everyPlayer"
        model = "Player"

        def __init__(self):
            self.items = set()

        def add_subscription_item(self, item):
            self.items.add(item)

        def remove_subscription_item(self, item):
            self.items.remove(item)

        def get_subscription_items_for_model(self, model):
            return self.items

        def deliver_delta(self, delta):          # 0.1 dealers saw Delta objects
            received.append((type(delta).__name__, delta.model, delta.for_json()))
            Dealer.deliver_delta(self, delta)

    class PlayersByColor(SimpleDealer):
        name = "playersByColor"
        model = "Player"

        def get_key_for_model(self, model):
            return model["color"]

    timeouts = ManualTimeouts()
    datasync = DataSyncService("datasync", [EveryPlayer, PlayersByColor])
    backend = DataSyncBackend("datasync_backend", datasync, timeout_interval=5, timeout_factory=timeouts)
    assert isinstance(datasync.dm, DealerManager) and isinstance(datasync.sm, SubscriptionManager)
    assert datasync.dm.get_dealer("playersByColor").name == "playersByColor"
    with pytest.raises(UnknownDealer):
        datasync.dm.get_dealer("nope")

    token = rpc(backend, FakeClient(), "authorizeSubscription",
                {"items": [{"dealer": "everyPlayer", "query": None}]})["data"]
    expiring = rpc(backend, FakeClient(), "authorizeSubscription",
                   {"items": [{"dealer": "playersByColor", "query": "red"}]})["data"]
    assert datasync.sm.get_subscription_with_token(token).token == token
    browser = FakeClient()
    assert rpc(datasync, browser, "acquireSubscription", {"token": token})["type"] == "response"
    assert len(timeouts.pending) == 1            # the acquired one's timer was cancelled
    timeouts.process_all()                       # the other expires now
    assert datasync.sm.get_subscription_with_token(expiring) is None

    deltas = [{"type": "insert", "model": "Player", "data": {"id": 1, "color": "red"}},
              {"type": "update", "model": "Player", "newData": {"id": 1, "color": "blue"},
               "oldData": {"id": 1, "color": "red"}},
              {"type": "delete", "model": "Player", "data": {"id": 1, "color": "blue"}}]
    assert rpc(backend, FakeClient(), "publishDeltas", {"deltas": deltas})["type"] == "response"
    assert [r[0] for r in received] == ["InsertionDelta", "UpdateDelta", "DeletionDelta"]
    assert [r[2] for r in received] == deltas
    assert [m["delta"] for m in browser.pop_messages("datasync")] == deltas
    assert UpdateDelta("M", 1, 2).new_data == 1 and InsertionDelta("M", 3) == {"type": "insert", "model": "M", "data": 3}
    assert DeletionDelta("M", 3).data == 3


def test_datasync_deliver_delta_override_is_honoured():
    from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
    from snorky_sync.services.datasync.dealers import BroadcastDealer

    class AllPlayers(BroadcastDealer):
        model = "Player"

    class Redacting(DataSyncService):
        def deliver_delta(self, client, delta):      # 0.1's hook: one call per client and delta
            out = dict(delta.for_json(), data={"id": delta.data["id"]})
            self.send_message_to(client, {"type": "delta", "delta": out})

    datasync = Redacting("datasync", [AllPlayers])
    backend = DataSyncBackend("datasync_backend", datasync)
    browsers = [FakeClient(), FakeClient()]
    for browser in browsers:
        token = rpc(backend, FakeClient(), "authorizeSubscription",
                    {"items": [{"dealer": "AllPlayers", "query": None}]})["data"]
        rpc(datasync, browser, "acquireSubscription", {"token": token})
    rpc(backend, FakeClient(), "publishDeltas",
        {"deltas": [{"type": "insert", "model": "Player", "data": {"id": 1, "secret": "x"}}]})
    for browser in browsers:
        assert browser.pop_messages("datasync") == [
            {"type": "delta", "delta": {"type": "insert", "model": "Player", "data": {"id": 1}}}]


def test_01_filter_functions():
    from snorky_sync.services.datasync.dealers import filter_matches, get_field, operator_functions

    player = {"name": "Alice", "player": {"color": "blue", "age": 30}}
    assert get_field(player, "player.color") == "blue"
    with pytest.raises(KeyError):
        get_field(player, "player.missing")
    assert filter_matches(player, ["and", ["==", "player.color", "blue"], [">=", "player.age", 21]])
    assert operator_functions["<"](player, "player.age", 21) is False
    assert operator_functions["not"](player, ["==", "name", "Bob"]) is True
    assert operator_functions["<"](player, "name", 3) is False   # unorderable: false, never raises


# -- backend connector -------------------------------------------------------------------------

def test_backend_connector_with_a_01_transport_and_json_module():
    from snorky_sync.backend import SnorkyBackend, SnorkyError

    calls = []

    class RecordingTransport:                    # 0.1's transport interface
        def send(self, message, json=json):
            calls.append(json.dumps(message))
            if message["message"]["command"] == "fail":
                return {"service": "s", "message": {"type": "error", "message": "Nope"}}
            return {"service": "s", "message": {"type": "response", "data": message["message"]["params"]}}

    class CountingJSON:
        dumps = staticmethod(lambda v: "counted:" + json.dumps(v, sort_keys=True))
        loads = staticmethod(json.loads)

    backend = SnorkyBackend(RecordingTransport(), json=CountingJSON)
    assert backend.call("s", "echo", a=1) == {"a": 1}
    with pytest.raises(SnorkyError) as exc:
        backend.call("s", "fail")
    assert exc.value.message == "Nope"
    assert backend.send({"service": "s", "message": {"command": "x", "params": {}}})["message"]["type"] == "response"
    assert all(c.startswith("counted:") for c in calls) and len(calls) == 3


def test_backend_helpers_go_through_an_overriding_call():
    """A 0.1 subclass overriding ``call`` (retries, logging) sees the helpers'
    calls too: publish, publish_deltas and authorize_subscription use it."""
    from snorky_sync.backend import SnorkyBackend

    class Echo:
        def send(self, message, json=json):
            return {"service": "s", "message": {"type": "response", "data": "tok"}}

    seen = []

    class Logging(SnorkyBackend):
        def call(self, service, command, **params):
            seen.append((service, command, params))
            return super().call(service, command, **params)

    backend = Logging(Echo())
    backend.publish("news", {"n": 1}, idempotency_key="k1")
    backend.publish_deltas([{"type": "insert", "model": "M", "data": {}}])
    assert backend.authorize_subscription([{"dealer": "d", "query": None}], requester="user:1") == "tok"
    assert seen == [
        ("pubsub_backend", "publish", {"channel": "news", "message": {"n": 1}, "idempotencyKey": "k1"}),
        ("datasync_backend", "publishDeltas", {"deltas": [{"type": "insert", "model": "M", "data": {}}]}),
        ("datasync_backend", "authorizeSubscription",
         {"items": [{"dealer": "d", "query": None}], "requester": "user:1"}),
    ]

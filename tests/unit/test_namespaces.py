"""Channel namespaces (issue #24 item 1, the declarative form): options
checked as they are built, a channel's namespace by its prefix, the rules on
every way into a channel (subscribe, recovery with ``since``, server-side
subscribe, Chat's join) and out of a client (publish, Chat's send), their
order with personal channels and the hooks, and per-namespace history sizes."""
import json

import pytest

from snorky_sync.services.base import RPCError
from snorky_sync.services.chat import ChatService
from snorky_sync.services.namespaces import Namespace, Namespaces
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient, rpc

REFUSED = "Not authorized"


def admins(client, channel):
    return client.identity == "root"


NAMESPACES = Namespaces({
    "public": Namespace(subscribe="anyone", publish="authenticated"),
    "admin": Namespace(subscribe=admins, publish="nobody"),
    "room": Namespace(subscribe="authenticated", publish="subscribers"),
    "inbox": Namespace(personal_channels=True),
})


# -- building them: loud on every mistake ---------------------------------------------------
@pytest.mark.parametrize("kwargs, error, words", [
    ({"subscribe": "everyone"}, ValueError, ["Namespace(subscribe=...)", "'everyone'"]),
    ({"publish": "authentificated"}, ValueError, ["Namespace(publish=...)", "did you mean 'authenticated'"]),
    ({"subscribe": "subscribers"}, ValueError, ["Namespace(subscribe=...)"]),
    ({"subscribe": True}, TypeError, ["Namespace(subscribe=...)", "bool"]),
    ({"publish": None}, TypeError, ["Namespace(publish=...)"]),
    ({"publish": str}, TypeError, ["Namespace(publish=...)"]),  # a class is not a rule
    ({"history_size": 0}, ValueError, ["Namespace(history_size=...)"]),
    ({"history_size": "10"}, TypeError, ["Namespace(history_size=...)"]),
    ({"history_size": True}, TypeError, ["Namespace(history_size=...)"]),
    ({"personal_channels": 1}, TypeError, ["Namespace(personal_channels=...)"]),
])
def test_a_wrong_option_is_refused_naming_it(kwargs, error, words):
    with pytest.raises(error) as info:
        Namespace(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_an_unknown_option_is_refused():
    with pytest.raises(TypeError, match="history"):
        Namespace(history=10)
    with pytest.raises(ValueError, match=r"namespace 'a': unknown option 'presense'.*"
                                         r"options are subscribe, publish, history_size"):
        Namespaces.from_config({"a": {"presense": True}})
    with pytest.raises(ValueError, match=r"unknown option 'subcribe' \(did you mean 'subscribe'\?\)"):
        Namespaces.from_config('{"a": {"subcribe": "nobody"}}')


@pytest.mark.parametrize("build, error, words", [
    (lambda: Namespaces({"": Namespace()}), ValueError, ["name"]),
    (lambda: Namespaces({"a:b": Namespace()}), ValueError, ["'a:b'", "separator"]),
    (lambda: Namespaces({"a": {"subscribe": "nobody"}}), TypeError, ["'a'", "Namespace(...)"]),
    (lambda: Namespaces({1: Namespace()}), TypeError, ["name"]),
    (lambda: Namespaces([("a", Namespace())]), TypeError, ["mapping"]),
    (lambda: Namespaces(separator=""), ValueError, ["separator"]),
    (lambda: Namespaces(default={"publish": "nobody"}), TypeError, ["default"]),
    (lambda: Namespaces.from_config("{not json"), ValueError, ["not JSON"]),
    (lambda: Namespaces.from_config('["a"]'), TypeError, ["object"]),
    (lambda: Namespaces.from_config({"a": "nobody"}), TypeError, ["namespace 'a'"]),
    (lambda: Namespaces.from_config({"a": {"publish": 3}}), TypeError, ["namespace 'a'", "publish"]),
    (lambda: Namespaces.from_config({"*": {"subscribe": "noone"}}), ValueError, ["default", "'noone'"]),
    (lambda: PubSubService("p", namespaces=[("a", Namespace())]), TypeError, ["PubSubService(namespaces=...)"]),
    (lambda: ChatService("c", namespaces="public"), TypeError, ["ChatService(namespaces=...)"]),
    # a namespace sizes the service's history; it cannot turn it on
    (lambda: PubSubService("p", namespaces={"a": Namespace(history_size=5)}), ValueError,
     ["PubSubService(namespaces=...)", "'a'", "history_size"]),
    (lambda: ChatService("c", namespaces=Namespaces(default=Namespace(history_size=5))), ValueError,
     ["ChatService(namespaces=...)", "the default"]),
])
def test_wrong_namespaces_are_refused(build, error, words):
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value)


def test_namespaces_are_immutable_values():
    ns = Namespace(publish="nobody")
    with pytest.raises(AttributeError):
        ns.publish = "anyone"
    with pytest.raises(AttributeError):
        NAMESPACES.separator = "."
    assert Namespaces.from_config(json.dumps({"a": {"publish": "nobody", "history_size": 3},
                                              "*": {"subscribe": "authenticated"}})) == Namespaces(
        {"a": Namespace(publish="nobody", history_size=3)},
        default=Namespace(subscribe="authenticated"))
    assert "publish='nobody'" in repr(ns)


def test_a_channel_belongs_to_the_namespace_its_prefix_names():
    of = NAMESPACES.name_of
    assert of("public:news") == "public"
    assert of("public:") == "public"
    assert of("admin:a:b") == "admin"
    assert of("public") is None            # no separator
    assert of("misc:x") is None            # no such namespace: the default
    assert of("Public:news") is None       # names are case-sensitive
    assert of({"room": 1}) is None         # not a string
    assert of(["public:x"]) is None
    dotted = Namespaces({"a": Namespace(publish="nobody")}, separator=".")
    assert dotted.name_of("a.b") == "a" and dotted.name_of("a:b") is None
    assert Namespaces().of("x:y") == Namespace()


# -- the rules --------------------------------------------------------------------------
def test_subscribe_rules():
    anon, alice, root = FakeClient(None), FakeClient("alice"), FakeClient("root")
    may = NAMESPACES.may_subscribe
    assert [may(c, "public:x") for c in (anon, alice, root)] == [True, True, True]
    assert [may(c, "admin:x") for c in (anon, alice, root)] == [False, False, True]
    assert [may(c, "room:x") for c in (anon, alice, root)] == [False, True, True]
    assert [may(c, "other:x") for c in (anon, alice, root)] == [True, True, True]  # default: open
    assert may(alice, "inbox:n#alice") and not may(root, "inbox:n#alice") and not may(anon, "inbox:n#alice")
    assert may(alice, "inbox:plain")  # no '#': not personal
    assert not Namespaces(default=Namespace(subscribe="nobody")).may_subscribe(root, "anything")


def test_publish_rules():
    anon, alice = FakeClient(None), FakeClient("alice")
    may = NAMESPACES.may_publish
    assert (may(anon, "public:x"), may(alice, "public:x")) == (False, True)
    assert (may(anon, "admin:x"), may(FakeClient("root"), "admin:x")) == (False, False)
    assert not may(alice, "room:x")
    assert not may(alice, "room:x", lambda: False) and may(alice, "room:x", lambda: True)
    assert may(alice, "inbox:n#alice") and not may(FakeClient("eve"), "inbox:n#alice")


def test_a_function_rule_is_given_the_client_and_the_channel_and_refuses_unless_true():
    seen = []

    def rule(client, channel):
        seen.append((client.identity, channel))
        return None  # forgot to return: refused
    ns = Namespaces({"f": Namespace(subscribe=rule)})
    assert not ns.may_subscribe(FakeClient("a"), "f:1")
    assert seen == [("a", "f:1")]


# -- in PubSub ------------------------------------------------------------------------------
def publish(svc, channel, message):
    rpc(svc, FakeClient("publisher"), "publish", {"channel": channel, "message": message})


@pytest.mark.parametrize("history", [0, 10])
def test_pubsub_subscribe_refused_where_the_namespace_says(history):
    svc = PubSubService("p", history_size=history, namespaces=NAMESPACES)
    alice, root = FakeClient("alice"), FakeClient("root")
    assert rpc(svc, alice, "subscribe", {"channel": "admin:logs"})["message"] == REFUSED
    assert rpc(svc, FakeClient(None), "subscribe", {"channel": "room:1"})["message"] == REFUSED
    assert svc.subscribers == {}
    publish(svc, "admin:logs", 1)
    assert alice.frames == []
    assert rpc(svc, root, "subscribe", {"channel": "admin:logs"})["type"] == "response"
    assert rpc(svc, alice, "subscribe", {"channel": "public:news"})["type"] == "response"
    assert rpc(svc, alice, "subscribe", {"channel": "elsewhere"})["type"] == "response"


def test_pubsub_recovery_with_since_refused():
    svc = PubSubService("p", history_size=10, namespaces=NAMESPACES)
    root, alice = FakeClient("root"), FakeClient("alice")
    epoch = rpc(svc, root, "subscribe", {"channel": "admin:logs"})["data"]["epoch"]
    publish(svc, "admin:logs", "secret")
    root.frames.clear()
    answer = rpc(svc, alice, "subscribe", {"channel": "admin:logs", "since": {"offset": 0, "epoch": epoch}})
    assert answer["message"] == REFUSED
    assert alice.frames == []
    assert not svc.history.gate.holding and not svc.history.gate.waiting


def test_pubsub_server_side_subscribe_refused():
    svc = PubSubService("p", namespaces=NAMESPACES)
    alice = FakeClient("alice")
    svc.client_connected(alice)
    with pytest.raises(RPCError, match=REFUSED):
        svc.subscribe_client(alice, "admin:logs")
    assert svc.subscribe_client(alice, "public:news") is True
    assert alice.pop_messages() == [{"type": "subscribed", "channel": "public:news"}]


def test_pubsub_a_publish_racing_a_refused_subscribe_is_not_received():
    svc = PubSubService("p", history_size=10)
    a = FakeClient("a")

    def rule(client, channel):  # a publish lands while the rule runs
        publish(svc, channel, "raced")
        return False
    svc.namespaces = Namespaces({"slow": Namespace(subscribe=rule)})
    svc.process_message_from(a, {"command": "subscribe", "params": {"channel": "slow:1"}, "callId": 1})
    assert a.pop_messages() == [{"type": "error", "callId": 1, "message": REFUSED}]


def test_pubsub_publish_refused_where_the_namespace_says():
    svc = PubSubService("p", namespaces=NAMESPACES)
    anon, alice, root = FakeClient(None), FakeClient("alice"), FakeClient("root")
    rpc(svc, root, "subscribe", {"channel": "admin:logs"})
    rpc(svc, root, "subscribe", {"channel": "room:1"})

    def publish_as(client, channel):
        return rpc(svc, client, "publish", {"channel": channel, "message": "m"})
    assert publish_as(root, "admin:logs")["message"] == REFUSED      # nobody
    assert publish_as(anon, "public:news")["message"] == REFUSED     # authenticated
    assert publish_as(alice, "room:1")["message"] == REFUSED         # subscribers
    assert root.frames == []
    assert publish_as(alice, "public:news")["type"] == "response"
    assert publish_as(root, "room:1")["type"] == "response"          # root is subscribed
    assert publish_as(anon, "elsewhere")["type"] == "response"
    svc.do_publish("admin:logs", "from the backend")                 # the backend: no rule
    assert [m["message"] for m in root.pop_messages() if m.get("type") == "message"] == [
        "from the backend"]


def test_pubsub_order_personal_then_namespace_then_hook():
    asked = []

    class Hooked(PubSubService):
        def can_subscribe(self, client, channel):
            asked.append(("subscribe", channel))
            return channel != "public:closed-by-hook"

        def can_publish(self, client, channel):
            asked.append(("publish", channel))
            return True
    svc = Hooked("p", personal_channels=True, namespaces=NAMESPACES)
    alice = FakeClient("alice")
    assert rpc(svc, alice, "subscribe", {"channel": "public:dm#bob"})["message"] == REFUSED
    assert rpc(svc, alice, "subscribe", {"channel": "admin:x"})["message"] == REFUSED
    assert asked == []  # refused before the hook is asked
    assert rpc(svc, alice, "subscribe", {"channel": "public:closed-by-hook"})["message"] == REFUSED
    assert rpc(svc, alice, "subscribe", {"channel": "public:open"})["type"] == "response"
    assert rpc(svc, alice, "publish", {"channel": "admin:x", "message": 1})["message"] == REFUSED
    assert asked == [("subscribe", "public:closed-by-hook"), ("subscribe", "public:open")]
    rpc(svc, alice, "publish", {"channel": "public:open", "message": 1})
    assert asked[-1] == ("publish", "public:open")


def test_pubsub_per_namespace_history_size():
    svc = PubSubService("p", history_size=5, namespaces={"short": Namespace(history_size=2),
                                                         "long": Namespace(history_size=8)})
    for channel in ("short:a", "long:a", "other"):
        for i in range(10):
            publish(svc, channel, i)
    assert {c: kept(svc, c) for c in ("short:a", "long:a", "other")} == {
        "short:a": [8, 9], "long:a": list(range(2, 10)), "other": list(range(5, 10))}
    # what a subscriber recovers is what its namespace kept (offsets 9 and 10 of short:a)
    epoch = svc.history.store.read("short:a")[1]
    a, b = FakeClient("a"), FakeClient("b")
    since = {"channel": "short:a", "since": {"offset": 7, "epoch": epoch}}
    assert rpc(svc, a, "subscribe", since)["data"]["recovered"] is False
    svc.process_message_from(b, {"command": "subscribe", "callId": 1, "params": {
        "channel": "short:a", "since": {"offset": 8, "epoch": epoch}}})
    got = b.pop_messages()
    assert [m["message"] for m in got[:-1]] == [8, 9] and got[-1]["data"]["recovered"] is True


def kept(svc, channel):
    """The messages the service's history keeps of ``channel``."""
    return [json.loads(env)["message"]["message"] for _, env in svc.history.store.read(channel)[2]]


# -- in Chat ------------------------------------------------------------------------------
CHAT_NS = Namespaces({"team": Namespace(subscribe=lambda c, ch: c.identity in ("ann", "bob")),
                      "announce": Namespace(publish="nobody"),
                      "members": Namespace(publish="subscribers")})


@pytest.mark.parametrize("history", [0, 10])
def test_chat_join_refused_where_the_namespace_says(history):
    svc = ChatService("c", history_size=history, namespaces=CHAT_NS)
    ann, eve = FakeClient("ann"), FakeClient("eve")
    rpc(svc, ann, "join", {"channel": "team:dev"})
    ann.frames.clear()
    assert rpc(svc, eve, "join", {"channel": "team:dev"})["message"] == REFUSED
    assert ann.frames == []  # no presence for a refused join
    assert rpc(svc, eve, "join", {"channel": "other"})["type"] == "response"


def test_chat_recovery_refused():
    svc = ChatService("c", history_size=10, namespaces=CHAT_NS)
    ann, eve = FakeClient("ann"), FakeClient("eve")
    epoch = rpc(svc, ann, "join", {"channel": "team:dev"})["data"]["epoch"]
    rpc(svc, ann, "send", {"channel": "team:dev", "body": "hi"})
    for extra in ({"since": {"offset": 0, "epoch": epoch}}, {"recent": 5}):
        assert rpc(svc, eve, "join", {"channel": "team:dev", **extra})["message"] == REFUSED
        assert eve.frames == []


def test_chat_send_refused_where_the_namespace_says():
    svc = ChatService("c", namespaces=CHAT_NS)
    ann = FakeClient("ann")
    rpc(svc, ann, "join", {"channel": "announce:x"})
    rpc(svc, ann, "join", {"channel": "members:x"})
    ann.frames.clear()
    assert rpc(svc, ann, "send", {"channel": "announce:x", "body": "b"})["message"] == REFUSED
    assert rpc(svc, ann, "send", {"channel": "members:x", "body": "b"})["type"] == "response"
    assert rpc(svc, FakeClient("eve"), "send",
               {"channel": "members:x", "body": "b"})["message"] == REFUSED


def test_chat_per_namespace_history_size():
    svc = ChatService("c", history_size=4, namespaces={"short": Namespace(history_size=1)})
    ann = FakeClient("ann")
    for channel in ("short:a", "other"):
        rpc(svc, ann, "join", {"channel": channel})
        for i in range(6):
            rpc(svc, ann, "send", {"channel": channel, "body": i})
    sizes = {c: len(svc.history.store.read(c)[2]) for c in ("short:a", "other")}
    assert sizes == {"short:a": 1, "other": 4}


# -- the default app: SNORKY_NAMESPACES ---------------------------------------------------
def test_the_default_app_takes_its_namespaces_from_the_setting():
    from snorky_sync.app import create_app
    from snorky_sync.settings import Settings

    config = {"public": {"publish": "authenticated"}, "*": {"subscribe": "authenticated"}}
    app = create_app(Settings.from_env({"SNORKY_NAMESPACES": json.dumps(config)}))
    frontend = app.extensions["snorky_sync.registries"]["frontend"]
    expected = Namespaces.from_config(config)
    for name in ("pubsub", "chat"):
        assert frontend.get_service(name).namespaces == expected
    unset = create_app(Settings()).extensions["snorky_sync.registries"]["frontend"]
    assert unset.get_service("pubsub").namespaces is None  # every channel open, as in 0.1


@pytest.mark.parametrize("raw, words", [
    ('{"public": {"publish": "authentificated"}}', ["SNORKY_NAMESPACES", "did you mean 'authenticated'"]),
    ('{"public": {"history": 3}}', ["SNORKY_NAMESPACES", "unknown option 'history'"]),
    ('{"public": {"history_size": 3}}', ["SNORKY_NAMESPACES", "'public'", "SNORKY_PUBSUB_HISTORY_SIZE"]),
    ("public", ["SNORKY_NAMESPACES", "not JSON"]),
])
def test_the_default_app_refuses_wrong_namespaces(raw, words):
    from snorky_sync.app import create_app
    from snorky_sync.settings import Settings

    with pytest.raises(ValueError) as info:
        create_app(Settings.from_env({"SNORKY_NAMESPACES": raw}))
    for word in words:
        assert word in str(info.value)

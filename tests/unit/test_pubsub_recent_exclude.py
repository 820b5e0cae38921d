"""PubSub ``subscribe({channel, recent: n})``, latest-value namespaces
(``Namespace(recent=n)``) and ``publish({..., excludeSender: true})`` (issue
#25 items 5 and 6), in one process and with a distributed store (the
in-memory stand-in of tests/unit/test_channel_history.py; with a real Redis:
tests/cluster/test_recent_exclude_cluster.py)."""
import gevent
import pytest
from test_channel_history import SharedBroker

from snorky_sync import ServiceRegistry
from snorky_sync.services.chat import ChatService
from snorky_sync.services.namespaces import Namespace, Namespaces
from snorky_sync.services.pubsub import PubSubBackend, PubSubService
from support.fakes import FakeClient, rpc


def publish(svc, channel, message):
    rpc(svc, FakeClient(), "publish", {"channel": channel, "message": message})


def call(svc, client, command, params):
    """Every message ``client`` gets for the call, its answer last."""
    client.frames.clear()
    svc.process_message_from(client, {"command": command, "callId": 7, "params": params})
    return client.pop_messages()


def offsets(messages):
    return [m["offset"] for m in messages if m.get("type") == "message"]


# -- recent ----------------------------------------------------------------------------
def test_recent_sends_the_last_n_with_their_offsets_before_the_answer():
    svc = PubSubService("pubsub", history_size=10)
    for i in range(6):
        publish(svc, "c", i)
    a = FakeClient()
    got = call(svc, a, "subscribe", {"channel": "c", "recent": 2})
    assert [m["message"] for m in got[:-1]] == [4, 5] and offsets(got) == [5, 6]
    assert got[-1]["data"]["offset"] == 6 and got[-1]["data"]["epoch"] == got[0]["epoch"]
    publish(svc, "c", 6)
    assert offsets(a.pop_messages()) == [7]          # live goes on from the next offset
    b = FakeClient()
    assert offsets(call(svc, b, "subscribe", {"channel": "c", "recent": 50})) == list(range(1, 8))
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "c", "recent": 0})) == []
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "new", "recent": 3})) == []


def test_recent_with_since_recovers_instead():
    svc = PubSubService("pubsub", history_size=10)
    epoch = rpc(svc, FakeClient(), "subscribe", {"channel": "c"})["data"]["epoch"]
    for i in range(5):
        publish(svc, "c", i)
    got = call(svc, FakeClient(), "subscribe", {"channel": "c", "recent": 1,
                                                "since": {"offset": 2, "epoch": epoch}})
    assert offsets(got) == [3, 4, 5] and got[-1]["data"]["recovered"] is True


@pytest.mark.parametrize("recent, error", [
    (-1, "Invalid params"), ("2", "Invalid params"), (True, "Invalid params"), (1.5, "Invalid params"),
    (101, "Recent too large"),
])
def test_a_wrong_or_too_large_recent_is_refused(recent, error):
    svc = PubSubService("pubsub", history_size=10)
    a = FakeClient()
    assert rpc(svc, a, "subscribe", {"channel": "c", "recent": recent})["message"] == error
    assert a not in svc.subscribed.clients("c")


def test_max_recent_is_a_checked_keyword():
    svc = PubSubService("pubsub", history_size=10, max_recent=3)
    assert rpc(svc, FakeClient(), "subscribe", {"channel": "c", "recent": 4})["message"] == "Recent too large"
    assert rpc(svc, FakeClient(), "subscribe", {"channel": "c", "recent": 3})["type"] == "response"
    with pytest.raises(ValueError, match=r"PubSubService\(max_recent=...\)"):
        PubSubService("pubsub", history_size=10, max_recent=-1)
    with pytest.raises(TypeError, match=r"PubSubService\(max_recent=...\)"):
        PubSubService("pubsub", history_size=10, max_recent="3")


def test_recent_without_history_is_refused():
    svc = PubSubService("pubsub")
    a = FakeClient()
    assert rpc(svc, a, "subscribe", {"channel": "c", "recent": 1})["message"] == "History not enabled"
    assert rpc(svc, a, "subscribe", {"channel": "c", "recent": -1})["message"] == "History not enabled"
    assert a not in svc.subscribed.clients("c")


# -- latest-value namespaces -----------------------------------------------------------------
def test_a_latest_value_namespace_sends_the_last_publication_on_every_subscribe():
    ns = Namespaces({"price": Namespace(recent=1), "feed": Namespace(recent=3)})
    svc = PubSubService("pubsub", history_size=10, namespaces=ns)
    for i in range(4):
        publish(svc, "price:eur", i)
        publish(svc, "feed:x", i)
        publish(svc, "other", i)
    got = call(svc, FakeClient(), "subscribe", {"channel": "price:eur"})
    assert [m["message"] for m in got[:-1]] == [3] and got[-1]["data"]["offset"] == 4
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "feed:x"})) == [2, 3, 4]
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "other"})) == []
    # the page's own recent (0 included) and since win over the namespace's
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "price:eur", "recent": 0})) == []
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "price:eur", "recent": 2})) == [3, 4]
    epoch = got[0]["epoch"]
    assert offsets(call(svc, FakeClient(), "subscribe", {"channel": "price:eur",
                                                         "since": {"offset": 4, "epoch": epoch}})) == []


def test_a_latest_value_namespace_in_chat():
    ns = {"room": Namespace(recent=2)}
    svc = ChatService("chat", history_size=10, namespaces=ns)
    alice = FakeClient("alice")
    rpc(svc, alice, "join", {"channel": "room:a"})
    for i in range(3):
        rpc(svc, alice, "send", {"channel": "room:a", "body": i})
    got = call(svc, FakeClient("bob"), "join", {"channel": "room:a"})
    assert [m["body"] for m in got if m.get("type") == "message"] == [1, 2]


def test_namespace_recent_is_checked_and_needs_history():
    with pytest.raises(ValueError, match=r"Namespace\(recent=...\)"):
        Namespace(recent=0)
    with pytest.raises(TypeError, match=r"Namespace\(recent=...\)"):
        Namespace(recent="1")
    with pytest.raises(ValueError, match="'price' set\\(s\\) recent but the service keeps no history"):
        PubSubService("pubsub", namespaces={"price": Namespace(recent=1)})
    with pytest.raises(ValueError, match="the default set\\(s\\) recent"):
        ChatService("chat", namespaces=Namespaces(default=Namespace(recent=1)))
    assert Namespaces.from_config('{"price": {"recent": 1}}').of("price:x").recent == 1
    with pytest.raises(ValueError, match="did you mean 'recent'"):
        Namespaces.from_config('{"price": {"recents": 1}}')


# -- excludeSender ----------------------------------------------------------------------------
@pytest.mark.parametrize("history_size", [0, 10])
def test_exclude_sender_skips_the_publishing_connection_only(history_size):
    svc = PubSubService("pubsub", history_size=history_size)
    sender, same_user, other = FakeClient("ann"), FakeClient("ann"), FakeClient("bob")
    for c in (sender, same_user, other):
        rpc(svc, c, "subscribe", {"channel": "c"})
    got = call(svc, sender, "publish", {"channel": "c", "message": "hi", "excludeSender": True})
    assert len(got) == 1 and got[0]["type"] == "response"      # its answer only
    for c in (same_user, other):
        assert [m["message"] for m in c.pop_messages()] == ["hi"]
    if history_size:
        assert got[0]["data"] == {"offset": 1, "epoch": svc.history.store.read("c")[1]}
        publish(svc, "c", "next")
        assert offsets(sender.pop_messages()) == [2]          # contiguous with the answer's
    else:
        assert got[0]["data"] is None
    # without it (or false), 0.1's publish: the sender gets its message, the answer is null
    got = call(svc, sender, "publish", {"channel": "c", "message": "echo", "excludeSender": False})
    assert [m.get("message") for m in got] == ["echo", None] and got[-1]["data"] is None


def test_exclude_sender_checks_and_the_backend():
    svc = PubSubService("pubsub", history_size=10)
    a = FakeClient()
    rpc(svc, a, "subscribe", {"channel": "c"})
    assert rpc(svc, a, "publish", {"channel": "c", "message": 1, "excludeSender": "yes"})[
        "message"] == "Invalid params"
    assert a.pop_messages() == []
    backend = PubSubBackend("pubsub_backend", svc)
    assert "backend has no subscription" in rpc(backend, FakeClient(), "publish", {
        "channel": "c", "message": 1, "excludeSender": True})["message"]
    assert rpc(backend, FakeClient(), "publish", {"channel": "c", "message": 1,
                                                  "excludeSender": False})["type"] == "response"


# -- with a distributed store -------------------------------------------------------------------
def distributed(**kwargs):
    svc, broker = PubSubService("s", history_size=10, **kwargs), SharedBroker()
    ServiceRegistry([svc], broker=broker)
    return svc, broker.store


def test_recent_distributed_with_publishes_during_the_read():
    svc, store = distributed()
    for i in range(4):
        svc.do_publish("c", i)                              # offsets 1..4
    late = FakeClient("late")

    def meanwhile():                                        # Redis read offset 4, then:
        store.publish("c", 4, store.streams["c"].entries[3][1])   # 4 again, in flight
        svc.do_publish("c", 4)                              # 5, live
    store.during_read = meanwhile
    got = call(svc, late, "subscribe", {"channel": "c", "recent": 2})
    assert offsets(got) == [3, 4, 5] and got[-1]["data"]["offset"] == 5
    svc.do_publish("c", 5)
    assert offsets(late.pop_messages()) == [6]


def test_exclude_sender_distributed_answers_in_the_message_place():
    svc, store = distributed()
    sender, other = FakeClient("ann"), FakeClient("bob")
    rpc(svc, sender, "subscribe", {"channel": "c"})
    rpc(svc, other, "subscribe", {"channel": "c"})
    # the message comes back before append returns (matched by its envelope)
    got = call(svc, sender, "publish", {"channel": "c", "message": "a", "excludeSender": True})
    assert [m["type"] for m in got] == ["response"] and got[0]["data"]["offset"] == 1
    # ... or after it returned: held on its way until we let it through
    later = []
    store.publish, real = (lambda key, offset, env: later.append((key, offset, env))), store.publish
    job = gevent.spawn(call, svc, sender, "publish", {"channel": "c", "message": "b", "excludeSender": True})
    gevent.sleep(0)                                        # appended (2), waiting for its message
    assert job.value is None and sender.frames == []
    store.publish = real
    real(*later.pop())                                     # 2 comes back (Redis keeps the order)
    svc.do_publish("c", "bob's")                           # 3
    got = job.get(timeout=5) + sender.pop_messages()
    assert [(m["type"], m.get("data", {}).get("offset") if m["type"] == "response" else m["offset"])
            for m in got] == [("response", 2), ("message", 3)]
    assert offsets(other.pop_messages()) == [1, 2, 3]
    assert svc.history.gate.excluded == {}


def test_exclude_sender_distributed_whose_message_never_comes_back(monkeypatch):
    svc, store = distributed()
    sender = FakeClient("ann")
    rpc(svc, sender, "subscribe", {"channel": "c"})
    monkeypatch.setattr(store, "publish", lambda *a: None)      # lost on its way back
    monkeypatch.setattr(type(svc.history), "exclude_wait", 0.05)
    got = call(svc, sender, "publish", {"channel": "c", "message": "a", "excludeSender": True})
    assert [m["type"] for m in got] == ["response"] and got[0]["data"]["offset"] == 1
    assert svc.history.gate.excluded == {}


def test_exclude_sender_distributed_not_subscribed_answers_at_once():
    svc, store = distributed()
    other = FakeClient("bob")
    rpc(svc, other, "subscribe", {"channel": "c"})
    got = call(svc, FakeClient("ann"), "publish", {"channel": "c", "message": "a", "excludeSender": True})
    assert got[-1]["data"]["offset"] == 1 and offsets(other.pop_messages()) == [1]
    assert svc.history.gate.excluded == {}

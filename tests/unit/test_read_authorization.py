"""Read authorization (issue #24 item 1): ``can_subscribe`` / ``can_join``
hooks and personal channels, checked before any state change, ``since``
recovery included; every refusal answers ``Not authorized``."""
import pytest

from snorky_sync.services.chat import ChatService
from snorky_sync.services.cursors import CursorsService
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient, rpc


def publish(svc, channel, message):
    rpc(svc, FakeClient("publisher"), "publish", {"channel": channel, "message": message})


class OnlyOpen:
    """A hook mixin: only channels named ``open...`` may be read."""
    asked: list

    def _allowed(self, client, channel):
        self.asked.append((client.identity, channel))
        return isinstance(channel, str) and channel.startswith("open")


class ClosedPubSub(OnlyOpen, PubSubService):
    def can_subscribe(self, client, channel):
        return self._allowed(client, channel)


class ClosedChat(OnlyOpen, ChatService):
    def can_join(self, client, channel):
        return self._allowed(client, channel)


class ClosedCursors(OnlyOpen, CursorsService):
    def can_join(self, client, document):
        return self._allowed(client, document)


def make(cls, **kw):
    svc = cls("svc", **kw)
    svc.asked = []
    return svc


# -- the hooks ---------------------------------------------------------------------------
def test_defaults_let_everyone_read():
    a = FakeClient("a")
    assert PubSubService("p").can_subscribe(a, "x") is True
    assert ChatService("c").can_join(a, "x") is True
    assert CursorsService("k").can_join(a, "x") is True


@pytest.mark.parametrize("history", [0, 10])
def test_pubsub_refused_subscribe_keeps_no_state(history):
    svc, a = make(ClosedPubSub, history_size=history), FakeClient("a")
    answer = rpc(svc, a, "subscribe", {"channel": "secret"})
    assert answer["type"] == "error" and answer["message"] == "Not authorized"
    assert svc.asked == [("a", "secret")]
    assert svc.subscribers == {} and svc.subscriptions == {}
    publish(svc, "secret", 1)
    assert a.frames == []
    assert rpc(svc, a, "subscribe", {"channel": "open"})["type"] == "response"
    assert rpc(svc, a, "unsubscribe", {"channel": "secret"})["message"] == "Not subscribed"


def test_pubsub_refused_recovery_replays_nothing():
    svc = make(ClosedPubSub, history_size=10)
    b = FakeClient("b")
    epoch = rpc(svc, b, "subscribe", {"channel": "open"})["data"]["epoch"]
    for i in range(3):
        publish(svc, "secret", i)  # the history of a channel b may not read
    svc.can_subscribe = lambda client, channel: False  # b's access taken back
    answer = rpc(svc, b, "subscribe", {"channel": "secret", "since": {"offset": 0, "epoch": epoch}})
    assert answer["message"] == "Not authorized"
    assert b.frames == []
    assert not svc.history.gate.holding and not svc.history.gate.waiting


def test_pubsub_a_publish_racing_a_refused_subscribe_is_not_received():
    svc = PubSubService("p")
    a = FakeClient("a")

    def can_subscribe(client, channel):  # a publish lands while the check runs
        publish(svc, channel, "raced")
        return False
    svc.can_subscribe = can_subscribe
    svc.process_message_from(a, {"command": "subscribe", "params": {"channel": "c"}, "callId": 1})
    assert a.pop_messages() == [{"type": "error", "callId": 1, "message": "Not authorized"}]


def test_pubsub_the_hook_sees_the_channel_as_sent():
    svc, a = make(ClosedPubSub), FakeClient(None)
    rpc(svc, a, "subscribe", {"channel": {"room": 1}})
    assert svc.asked == [(None, {"room": 1})]


def test_pubsub_channel_too_long_is_answered_before_the_hook():
    svc, a = make(ClosedPubSub), FakeClient("a")
    assert rpc(svc, a, "subscribe", {"channel": "x" * 5000})["message"] == "Channel too long"
    assert svc.asked == []


@pytest.mark.parametrize("history", [0, 10])
def test_chat_refused_join_keeps_no_state_and_tells_nobody(history):
    svc = make(ClosedChat, history_size=history)
    a, b = FakeClient("a"), FakeClient("b")
    rpc(svc, b, "join", {"channel": "open"})
    b.frames.clear()
    assert rpc(svc, a, "join", {"channel": "secret"})["message"] == "Not authorized"
    assert rpc(svc, a, "join", {"channel": "open-room"})["type"] == "response"
    assert svc.channels.keys() == {"open", "open-room"}
    assert "secret" not in svc.joined.members
    assert b.frames == []  # no presence for a refused join
    assert rpc(svc, a, "send", {"channel": "secret", "body": "x"})["message"] == "Not joined"


def test_chat_refused_recovery_replays_nothing():
    svc = ChatService("c", history_size=10)
    a, b = FakeClient("a"), FakeClient("b")
    epoch = rpc(svc, a, "join", {"channel": "room"})["data"]["epoch"]
    rpc(svc, a, "send", {"channel": "room", "body": "hello"})
    svc.can_join = lambda client, channel: client.identity == "a"
    for params in ({"since": {"offset": 0, "epoch": epoch}}, {"recent": 5}):
        assert rpc(svc, b, "join", {"channel": "room", **params})["message"] == "Not authorized"
        assert b.frames == []
    assert not svc.history.gate.holding


def test_chat_anonymous_is_not_authenticated_before_the_hook():
    svc = make(ClosedChat)
    assert rpc(svc, FakeClient(None), "join", {"channel": "secret"})["message"] == "Not authenticated"
    assert svc.asked == []


def test_cursors_refused_join():
    svc = make(ClosedCursors)
    a, b = FakeClient("a"), FakeClient("b")
    rpc(svc, b, "join", {"document": "open"})
    rpc(svc, b, "createCursor", {"privateHandle": 1, "document": "open", "position": 0, "status": None})
    assert rpc(svc, a, "join", {"document": "secret"})["message"] == "Not authorized"
    assert rpc(svc, a, "join", {"document": "open"})["data"]["cursors"][0]["owner"] == "b"
    assert set(svc.documents) == {"open"}
    assert rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "secret", "position": 0,
                                        "status": None})["message"] == "Not joined"


# -- personal channels (Centrifugo's `#`) --------------------------------------------------
@pytest.mark.parametrize("channel,identity,allowed", [
    ("dialog#alice,bob", "alice", True),
    ("dialog#alice,bob", "bob", True),
    ("dialog#alice,bob", "eve", False),
    ("dialog#alice,bob", "ali", False),
    ("dialog#alice,bob", "alice,bob", False),
    ("dialog#alice,bob", None, False),
    ("inbox#42", 42, True),
    ("inbox#42", "42", True),
    ("inbox#42", True, False),
    ("inbox#42", [42], False),
    ("a#b#carol", "carol", True),   # the list is after the last `#`
    ("a#b#carol", "b", False),
    ("nobody#", "", False),
    ("#alice", "alice", True),
    ("public", None, True),
    (["dialog#eve"], "alice", True),  # not a string: not personal
])
def test_personal_allows(channel, identity, allowed):
    from snorky_sync.services.access import personal_allows
    assert personal_allows(channel, identity) is allowed


@pytest.mark.parametrize("history", [0, 10])
def test_pubsub_personal_channels(history):
    svc = PubSubService("p", history_size=history, personal_channels=True)
    alice, bob, eve, anon = FakeClient("alice"), FakeClient("bob"), FakeClient("eve"), FakeClient(None)
    ch = "dialog#alice,bob"
    assert rpc(svc, alice, "subscribe", {"channel": ch})["type"] == "response"
    for c in (eve, anon):
        assert rpc(svc, c, "subscribe", {"channel": ch})["message"] == "Not authorized"
        assert rpc(svc, c, "publish", {"channel": ch, "message": "forged"})["message"] == "Not authorized"
    assert alice.frames == []
    assert rpc(svc, bob, "publish", {"channel": ch, "message": "hi"})["type"] == "response"
    assert [m["message"] for m in alice.pop_messages()] == ["hi"]
    assert eve.frames == [] and anon.frames == []
    assert rpc(svc, eve, "subscribe", {"channel": "public"})["type"] == "response"


def test_pubsub_personal_channel_recovery_is_refused():
    svc = PubSubService("p", history_size=10, personal_channels=True)
    alice, eve = FakeClient("alice"), FakeClient("eve")
    epoch = rpc(svc, alice, "subscribe", {"channel": "dialog#alice"})["data"]["epoch"]
    rpc(svc, alice, "publish", {"channel": "dialog#alice", "message": "secret"})
    answer = rpc(svc, eve, "subscribe", {"channel": "dialog#alice", "since": {"offset": 0, "epoch": epoch}})
    assert answer["message"] == "Not authorized" and eve.frames == []


def test_personal_channels_are_off_by_default():
    svc, eve = PubSubService("p"), FakeClient("eve")
    assert rpc(svc, eve, "subscribe", {"channel": "dialog#alice"})["type"] == "response"
    chat = ChatService("c")
    assert rpc(chat, eve, "join", {"channel": "dialog#alice"})["type"] == "response"


@pytest.mark.parametrize("history", [0, 10])
def test_chat_personal_channels(history):
    svc = ChatService("c", history_size=history, personal_channels=True)
    alice, eve = FakeClient("alice"), FakeClient("eve")
    assert rpc(svc, alice, "join", {"channel": "dm#alice,bob"})["type"] == "response"
    params = {"recent": 3} if history else {}
    assert rpc(svc, eve, "join", {"channel": "dm#alice,bob", **params})["message"] == "Not authorized"
    assert alice.frames == []  # no presence of eve
    assert rpc(svc, eve, "send", {"channel": "dm#alice,bob", "body": "x"})["message"] == "Not joined"


def test_the_setting_reaches_an_apps_own_services():
    from snorky_sync.registry import ServiceRegistry
    from snorky_sync.services.configure import configure_services
    from snorky_sync.settings import Settings

    def configured(setting, **kw):
        registry = ServiceRegistry()
        pubsub, chat = PubSubService("p", **kw), ChatService("c", **kw)
        registry.register_service(pubsub)
        registry.register_service(chat)
        configure_services(registry, Settings(personal_channels=setting))
        return pubsub.personal_channels, chat.personal_channels

    assert configured(None) == (False, False)  # an app's own services: 0.1's behaviour
    assert configured(True) == (True, True)
    assert configured(None, personal_channels=True) == (True, True)
    assert configured(False, personal_channels=False) == (False, False)
    with pytest.raises(ValueError, match="SNORKY_PERSONAL_CHANNELS"):
        configured(False, personal_channels=True)
    assert Settings.from_env({"SNORKY_PERSONAL_CHANNELS": "0"}).personal_channels is False
    assert Settings.from_env({"SNORKY_PERSONAL_CHANNELS": "on"}).personal_channels is True
    assert Settings.from_env({}).personal_channels is None
    with pytest.raises(ValueError, match="SNORKY_PERSONAL_CHANNELS='maybe'.*bool"):
        Settings.from_env({"SNORKY_PERSONAL_CHANNELS": "maybe"})


@pytest.mark.parametrize("setting,on", [(None, True), (False, False), (True, True)])
def test_the_default_app_turns_personal_channels_on(setting, on):
    from snorky_sync.app import create_app
    from snorky_sync.settings import Settings
    app = create_app(Settings(personal_channels=setting))
    frontend = app.extensions["snorky_sync.registries"]["frontend"]
    assert frontend.get_service("pubsub").personal_channels is on
    assert frontend.get_service("chat").personal_channels is on

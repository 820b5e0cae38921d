"""The built-in services' limits: constructor keywords with one naming scheme,
the class attributes as defaults, snorky_sync 0.2's upper-case names as
aliases (on instances, classes and 0.2-style subclasses), checked values,
and the mounted settings' "set in code" detection under both spellings."""
import pytest

from snorky_sync import RPCService, ServiceRegistry, rpc_command
from snorky_sync.services.chat import ChatService
from snorky_sync.services.configure import configure_services
from snorky_sync.services.cursors import CursorsService
from snorky_sync.services.datasync import DataSyncService
from snorky_sync.services.messaging import MessagingService
from snorky_sync.services.pubsub import PubSubService
from snorky_sync.settings import Settings
from support.fakes import FakeClient, rpc


class Room(RPCService):
    """A service of one's own using groups (Service.join_group)."""

    @rpc_command
    def enter(self, req, room):
        self.join_group(req.client, room)


KEYWORDS = [
    (Room, {"max_groups_per_client": 3, "max_group_name_size": 10}),  # every Service's
    (PubSubService, {"max_subscriptions": 3, "max_channel_size": 10}),
    (ChatService, {"max_channels": 3, "max_channel_size": 10, "max_message_size": 100}),
    (CursorsService, {"max_documents": 3, "max_document_size": 10, "max_cursors": 2,
                      "max_cursor_size": 50}),
    (DataSyncService, {"max_subscriptions": 3, "max_pending": 4, "max_pending_per_requester": 2,
                       "max_buffered_deltas": 5}),
    (MessagingService, {"max_names": 3, "max_name_size": 10}),
]

ALIASES = [  # snorky_sync 0.2's name -> the limit (Snorky 0.1 had no named limits)
    (CursorsService, "MAX_CURSORS", "max_cursors"),
    (DataSyncService, "MAX_SUBSCRIPTIONS_PER_CLIENT", "max_subscriptions"),
    (DataSyncService, "MAX_PENDING", "max_pending"),
    (DataSyncService, "MAX_PENDING_PER_REQUESTER", "max_pending_per_requester"),
    (DataSyncService, "MAX_BUFFERED_DELTAS", "max_buffered_deltas"),
    (MessagingService, "max_names_per_client", "max_names"),
]


@pytest.mark.parametrize("cls, limits", KEYWORDS, ids=lambda v: getattr(v, "__name__", ""))
def test_limits_are_constructor_keywords_and_the_class_keeps_the_defaults(cls, limits):
    defaults = {name: getattr(cls, name) for name in limits}
    svc = cls("svc", **limits)
    assert {name: getattr(svc, name) for name in limits} == limits
    assert {name: getattr(cls, name) for name in limits} == defaults
    plain = cls("svc")
    assert {name: getattr(plain, name) for name in limits} == defaults
    assert not set(limits) & set(vars(plain))  # the class's, not copied to the instance


@pytest.mark.parametrize("cls, limits", KEYWORDS, ids=lambda v: getattr(v, "__name__", ""))
def test_a_limit_of_the_wrong_kind_is_a_type_error_a_negative_one_a_value_error(cls, limits):
    for name in limits:
        with pytest.raises(TypeError, match=rf"{cls.__name__}\({name}=...\) is an integer >= 0, got str '3'"):
            cls("svc", **{name: "3"})
        with pytest.raises(TypeError, match=rf"\({name}=...\).*got bool"):
            cls("svc", **{name: True})
        with pytest.raises(ValueError, match=rf"{cls.__name__}\({name}=...\) is an integer >= 0, got -1"):
            cls("svc", **{name: -1})
        with pytest.raises(TypeError, match=rf"Bad.{name} is an integer >= 0, got float"):
            type("Bad", (cls,), {name: 2.5})


@pytest.mark.parametrize("cls, old, new", ALIASES)
def test_the_older_names_read_and_set_the_same_limit(cls, old, new):
    assert getattr(cls, old) == getattr(cls, new)
    svc = cls("svc")
    setattr(svc, old, 7)
    assert getattr(svc, new) == 7 and vars(svc)[new] == 7
    assert getattr(cls("svc", **{new: 5}), old) == 5
    sub = type("Old", (cls,), {old: 3})  # a subclass written against 0.2
    assert (sub.__dict__[new], getattr(sub, old), getattr(sub("svc"), new)) == (3, 3, 3)
    assert getattr(cls, new) != 3
    with pytest.raises(ValueError, match=rf"Bad.{old} is an integer >= 0, got -2"):
        type("Bad", (cls,), {old: -2})
    with pytest.raises(TypeError, match=f"sets both {old} and {new}"):
        type("Both", (cls,), {old: 3, new: 4})


def test_an_old_style_subclass_limit_is_in_effect():
    class Old(CursorsService):
        MAX_CURSORS = 1

    svc, a = Old("cursors"), FakeClient("a")
    rpc(svc, a, "join", {"document": "d"})
    rpc(svc, a, "createCursor", {"privateHandle": 1, "document": "d", "position": 0, "status": 0})
    answer = rpc(svc, a, "createCursor", {"privateHandle": 2, "document": "d", "position": 0, "status": 0})
    assert answer["message"] == "Too many cursors"


def test_setting_an_alias_on_the_class_sets_the_limit():
    sub = type("Sub", (DataSyncService,), {})
    sub.MAX_PENDING = 5
    assert sub.max_pending == 5 and sub("d").MAX_PENDING == 5
    assert DataSyncService.max_pending == 10000


def test_the_group_limits_given_as_keywords_are_in_effect():
    room, other, x = Room("room", max_groups_per_client=2, max_group_name_size=5), Room("room"), FakeClient("x")
    assert rpc(room, x, "enter", {"room": "abcdef"})["message"] == "Group name too long"
    rpc(room, x, "enter", {"room": "abc"})
    rpc(room, x, "enter", {"room": 2})
    assert rpc(room, x, "enter", {"room": 3})["message"] == "Too many groups"
    assert sorted(room.groups_of(x), key=str) == [2, "abc"]
    for n in range(3):  # another instance keeps the class's
        assert rpc(other, x, "enter", {"room": "abcdef" * 10 + str(n)})["type"] == "response"


# -- mounted: the settings fill in what the code did not set ----------------------------

def configured(*services, **settings):
    configure_services(ServiceRegistry(list(services)), Settings(**settings))
    return services


def test_settings_fill_in_the_limits_the_code_left_alone():
    cursors, datasync = configured(CursorsService("c"), DataSyncService("d"), max_cursors=3,
                                   max_subscriptions=4, max_pending_subscriptions=5,
                                   max_pending_per_requester=6)
    assert (cursors.max_cursors, cursors.MAX_CURSORS, cursors.max_documents) == (3, 3, 4)
    assert (datasync.max_subscriptions, datasync.max_pending, datasync.max_pending_per_requester) == (4, 5, 6)


class OldCursors(CursorsService):
    MAX_CURSORS = 2


class NewCursors(CursorsService):
    max_cursors = 2


def _instance_old():
    svc = CursorsService("c")
    svc.MAX_CURSORS = 2
    return svc


@pytest.mark.parametrize("make", [
    lambda: CursorsService("c", max_cursors=2), lambda: OldCursors("c"), lambda: NewCursors("c"),
    _instance_old,
], ids=["keyword", "0.2-subclass", "subclass", "0.2-instance"])
def test_a_limit_set_in_code_under_either_name_is_kept_and_a_conflicting_setting_refused(make):
    (svc,) = configured(make())                     # the setting at its default: the code's wins
    assert svc.max_cursors == svc.MAX_CURSORS == 2
    (svc,) = configured(make(), max_cursors=2)      # the same value twice: fine
    assert svc.max_cursors == 2
    with pytest.raises(ValueError, match="max_cursors is 2 in the code but SNORKY_MAX_CURSORS is 5"):
        configured(make(), max_cursors=5)


def test_a_datasync_limit_set_under_its_old_name_conflicts_with_its_setting():
    class Old(DataSyncService):
        MAX_PENDING = 7

    with pytest.raises(ValueError, match="max_pending is 7 in the code but SNORKY_MAX_PENDING_SUBSCRIPTIONS"):
        configured(Old("d"), max_pending_subscriptions=9)
    svc = DataSyncService("d")
    svc.MAX_SUBSCRIPTIONS_PER_CLIENT = 2
    with pytest.raises(ValueError, match="max_subscriptions is 2 in the code but SNORKY_MAX_SUBSCRIPTIONS"):
        configured(svc, max_subscriptions=9)

"""Channel namespaces: who may read and write each channel, declared.

Centrifugo's namespaces, for PubSub and Chat.  A channel whose name is a
string starting with ``NAME`` and the separator (``public:news`` with the
default ``":"``) belongs to namespace ``NAME``; its options say who may
subscribe (or join), who may publish (or send), and how many messages its
history keeps.  Every other channel, those of a name no namespace has
(``misc:x``) and those that are not strings included, is in the *default*
namespace, which lets everyone do everything unless given otherwise: without
namespaces, Snorky 0.1's behaviour::

    from snorky_sync.services.namespaces import Namespace, Namespaces

    namespaces = Namespaces({
        "public": Namespace(subscribe="anyone", publish="authenticated", history_size=50),
        "admin": Namespace(subscribe=lambda client, channel: client.identity in ADMINS,
                           publish="nobody"),
        "inbox": Namespace(subscribe="authenticated", publish="nobody", personal_channels=True),
    })
    pubsub = PubSubService("pubsub", history_size=10, namespaces=namespaces)

Options of a :class:`Namespace` (all keywords; Centrifugo's names in brackets):

``subscribe`` (``allow_subscribe_for_client``)
    who may read the channel: PubSub's ``subscribe`` (with ``since`` too),
    a server-side subscription (``control.subscribe``,
    ``connect_channels``), Chat's ``join`` (with ``since`` / ``recent``).
    ``"anyone"`` (the default; anonymous connections too),
    ``"authenticated"`` (a connection with an identity), ``"nobody"``, or a
    function ``rule(client, channel) -> bool``.
``publish`` (``allow_publish_for_client``, ``allow_publish_for_subscriber``)
    who may write into it: PubSub's ``publish``, Chat's ``send``.  The same
    values and ``"subscribers"`` (a connection subscribed to the channel; in
    Chat, where ``send`` needs a joined channel anyway, the same as
    ``"anyone"``).  The backend (``PubSubBackend``, ``/backend``) publishes
    whatever the namespace says.
``history_size`` (``history_size``)
    messages kept per channel of the namespace, instead of the service's
    ``history_size``.  History is the service's to turn on (it changes every
    channel's frames, adding ``offset`` and ``epoch``): a namespace sizes
    it, at least 1, and a service without history refuses a namespace that
    has one (ValueError).  None (default): the service's size.
``personal_channels`` (``allow_user_limited_channels``)
    True: a channel of the namespace with ``#`` in its name
    (``inbox:news#alice``) is readable and publishable only by the
    identities listed after the ``#`` (:mod:`.access`), even when the
    service's ``personal_channels`` is off.  It cannot turn the service's
    off for a namespace.
``recent`` (Centrifugo's cache recovery mode, for n = 1)
    a "latest value" channel: every PubSub ``subscribe`` (and Chat
    ``join``) of a channel of the namespace that asks neither ``since`` nor
    ``recent`` itself gets the channel's last ``recent`` messages before
    its answer, as with ``recent: n`` (a price, a status, a document's last
    version).  Needs the service's history, like ``history_size`` (the
    messages come from it, with their offsets).  None (default): nothing.
``presence`` (``presence``, ``join_leave``)
    True: the channels of the namespace keep presence with metadata
    (:mod:`.presence`: entries, ``presenceChange``, ``updatePresence``,
    ``presence``, ``presenceStats``, the backend's ``control.presence``)
    even when the service was created without ``presence=True``; False:
    they keep none even when it was (``Presence not enabled``, their
    subscribers are in no presence).  None (default): as the service says.

A function rule runs where the service's own hooks do: for reading, before
anything changes and without the service's lock (it may wait on a database);
for PubSub's ``publish``, under the lock.  Anything but a true value refuses.

Order of the checks, every one of which must allow (a refusal by any answers
``Not authorized``): the service's personal channels, then the namespace
(its personal channels, then its ``subscribe`` / ``publish`` rule), then the
service's hook (``can_subscribe`` / ``can_publish`` / ``can_join``), which an
app's subclass still overrides: the hook can refuse more, never allow what a
namespace refuses.  The cheap declarative rules run first, so a hook that
queries a database is asked only about what they let through.

Options are checked as the namespaces are built: an unknown option, a rule
that is neither one of the names nor a function, a namespace name that is
empty or contains the separator raise TypeError / ValueError naming it.
:meth:`Namespaces.from_config` builds them from JSON-like data (the default
app's ``SNORKY_NAMESPACES``), where rules are the names only.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from .. import checks
from .access import personal_allows

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Namespace", "Namespaces", "SUBSCRIBE_RULES", "PUBLISH_RULES", "DEFAULT_KEY"]

#: a rule: one of the names, or ``rule(client, channel) -> bool``
Rule = str | Callable[[Any, Any], Any]

SUBSCRIBE_RULES = ("anyone", "authenticated", "nobody")
PUBLISH_RULES = ("anyone", "authenticated", "subscribers", "nobody")
OPTIONS = ("subscribe", "publish", "history_size", "personal_channels", "recent", "presence")
#: the key of :meth:`Namespaces.from_config`'s mapping that holds the default's options
DEFAULT_KEY = "*"


def _rule(where: str, value: Any, names: tuple[str, ...]) -> Rule:
    if isinstance(value, str):
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where} is one of {', '.join(map(repr, names))} or a function "
                             f"(client, channel) -> bool, got {value!r}{hint}")
        return value
    if callable(value) and not isinstance(value, type):
        return value  # type: ignore[no-any-return]
    raise TypeError(f"{where} is one of {', '.join(map(repr, names))} or a function "
                    f"(client, channel) -> bool, got {type(value).__name__} {value!r:.80}")


class Namespace:
    """The options of one namespace (see the module); immutable."""

    __slots__ = ("subscribe", "publish", "history_size", "personal_channels", "recent", "presence")

    subscribe: Rule
    publish: Rule
    history_size: int | None
    personal_channels: bool
    recent: int | None
    presence: bool | None

    def __init__(self, *, subscribe: Rule = "anyone", publish: Rule = "anyone",
                 history_size: int | None = None, personal_channels: bool = False,
                 recent: int | None = None, presence: bool | None = None) -> None:
        set_ = object.__setattr__
        set_(self, "subscribe", _rule("Namespace(subscribe=...)", subscribe, SUBSCRIBE_RULES))
        set_(self, "publish", _rule("Namespace(publish=...)", publish, PUBLISH_RULES))
        if history_size is not None:
            history_size = checks.count("Namespace(history_size=...)", history_size, minimum=1)
        set_(self, "history_size", history_size)
        if not isinstance(personal_channels, bool):
            raise TypeError("Namespace(personal_channels=...) is True or False, got "
                            f"{type(personal_channels).__name__}")
        set_(self, "personal_channels", personal_channels)
        if recent is not None:
            recent = checks.count("Namespace(recent=...)", recent, minimum=1)
        set_(self, "recent", recent)
        if presence is not None and not isinstance(presence, bool):
            raise TypeError("Namespace(presence=...) is True, False or None (the service's), got "
                            f"{type(presence).__name__}")
        set_(self, "presence", presence)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Namespace is immutable (setting {name!r}); build another one")

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={getattr(self, name)!r}" for name in OPTIONS)
        return f"Namespace({options})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespace):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in OPTIONS)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_config(cls, options: Any, where: str = "Namespace") -> Namespace:
        """A namespace from a mapping of its options (JSON: rules by name);
        an unknown option raises ValueError naming it (``where``: how the
        message names the namespace)."""
        if not isinstance(options, Mapping):
            raise TypeError(f"{where} is an object of options ({', '.join(OPTIONS)}), "
                            f"got {type(options).__name__}")
        unknown = [k for k in options if k not in OPTIONS]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown option {key!r}{hint}; the options are "
                             f"{', '.join(OPTIONS)}")
        for key in ("subscribe", "publish"):
            if key in options and not isinstance(options[key], str):
                raise TypeError(f"{where}: {key} is a rule's name here, got "
                                f"{type(options[key]).__name__} {options[key]!r:.80}")
        try:
            return cls(**options)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None

    # -- the rules ------------------------------------------------------------------------
    def _personal_allows(self, client: Client, channel: Any) -> bool:
        return not self.personal_channels or personal_allows(channel, client.identity)

    def may_subscribe(self, client: Client, channel: Any) -> bool:
        """May ``client`` read ``channel`` (a channel of this namespace)?"""
        if not self._personal_allows(client, channel):
            return False
        return _allows(self.subscribe, client, channel, None)

    def may_publish(self, client: Client, channel: Any,
                    subscribed: Callable[[], bool] | None = None) -> bool:
        """May ``client`` write into ``channel``?  ``subscribed()`` says whether
        it is subscribed (asked for the ``"subscribers"`` rule only; None: no)."""
        if not self._personal_allows(client, channel):
            return False
        return _allows(self.publish, client, channel, subscribed)


def _allows(rule: Rule, client: Client, channel: Any, subscribed: Callable[[], bool] | None) -> bool:
    if rule == "anyone":
        return True
    if rule == "authenticated":
        return client.identity is not None
    if rule == "nobody":
        return False
    if rule == "subscribers":
        return subscribed is not None and bool(subscribed())
    assert callable(rule)
    return bool(rule(client, channel))


#: the default namespace's options: everyone may do everything (Snorky 0.1)
OPEN = Namespace()


class Namespaces:
    """Channel namespaces by name (``{name: Namespace}``), the ``separator``
    between a namespace's name and the rest of a channel's name, and the
    ``default`` namespace of every other channel (everyone may, unless
    given).  Immutable; one may serve several services."""

    __slots__ = ("namespaces", "separator", "default")

    namespaces: Mapping[str, Namespace]
    separator: str
    default: Namespace

    def __init__(self, namespaces: Mapping[str, Namespace] | None = None, *, separator: str = ":",
                 default: Namespace | None = None) -> None:
        checks.text("Namespaces(separator=...)", separator)
        if namespaces is None:
            namespaces = {}
        if not isinstance(namespaces, Mapping):
            raise TypeError("Namespaces(namespaces) is a mapping {name: Namespace(...)}, got "
                            f"{type(namespaces).__name__}")
        kept: dict[str, Namespace] = {}
        for name, ns in namespaces.items():
            checks.text("Namespaces(namespaces): a namespace's name", name)
            if separator in name:
                raise ValueError(f"Namespaces(namespaces): the namespace name {name!r} contains "
                                 f"the separator {separator!r}")
            if not isinstance(ns, Namespace):
                raise TypeError(f"Namespaces(namespaces): {name!r} is a Namespace(...), got "
                                f"{type(ns).__name__}")
            kept[name] = ns
        if default is None:
            default = OPEN
        elif not isinstance(default, Namespace):
            raise TypeError(f"Namespaces(default=...) is a Namespace(...), got {type(default).__name__}")
        set_ = object.__setattr__
        set_(self, "namespaces", kept)
        set_(self, "separator", separator)
        set_(self, "default", default)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Namespaces are immutable (setting {name!r}); build others")

    def __repr__(self) -> str:
        return (f"Namespaces({dict(self.namespaces)!r}, separator={self.separator!r}, "
                f"default={self.default!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespaces):
            return NotImplemented
        return (dict(self.namespaces), self.separator, self.default) == (
            dict(other.namespaces), other.separator, other.default)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_config(cls, config: Any, separator: str = ":") -> Namespaces:
        """Namespaces from ``{name: {option: value}}`` (a mapping, or its JSON
        text); the key ``"*"`` gives the default namespace's options.  Rules
        are given by name (``"authenticated"``, ...).  Raises ValueError /
        TypeError naming the namespace and option at fault."""
        if isinstance(config, (str, bytes)):
            try:
                config = orjson.loads(config)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"namespaces: not JSON ({exc})") from None
        if not isinstance(config, Mapping):
            raise TypeError("namespaces are an object {name: {option: value}}, got "
                            f"{type(config).__name__}")
        default = None
        namespaces = {}
        for name, options in config.items():
            if name == DEFAULT_KEY:
                default = Namespace.from_config(options, "the default namespace ('*')")
            else:
                namespaces[name] = Namespace.from_config(options, f"namespace {name!r}")
        return cls(namespaces, separator=separator, default=default)

    # -- looking channels up -----------------------------------------------------------
    def name_of(self, channel: Any) -> str | None:
        """The name of ``channel``'s namespace, None for the default."""
        if not isinstance(channel, str):
            return None
        name, sep, _ = channel.partition(self.separator)
        return name if sep and name in self.namespaces else None

    def of(self, channel: Any) -> Namespace:
        """``channel``'s namespace (the default when none is named)."""
        name = self.name_of(channel)
        return self.default if name is None else self.namespaces[name]

    def may_subscribe(self, client: Client, channel: Any) -> bool:
        """May ``client`` read ``channel``, as its namespace says?"""
        return self.of(channel).may_subscribe(client, channel)

    def may_publish(self, client: Client, channel: Any,
                    subscribed: Callable[[], bool] | None = None) -> bool:
        """May ``client`` write into ``channel``, as its namespace says?"""
        return self.of(channel).may_publish(client, channel, subscribed)

    def history_sizes(self) -> dict[str | None, int]:
        """``{namespace name (None: the default): history_size}`` of the namespaces that set one."""
        sizes: dict[str | None, int] = {name: ns.history_size for name, ns in self.namespaces.items()
                                        if ns.history_size is not None}
        if self.default.history_size is not None:
            sizes[None] = self.default.history_size
        return sizes

    def presence_of(self, key: Hashable, otherwise: bool) -> bool:
        """Does the channel of ``key`` (a channel, or a service's channel
        key) keep presence?  ``otherwise`` (the service's) when its
        namespace says nothing."""
        on = self.of(key if isinstance(key, str) else None).presence
        return otherwise if on is None else on

    def wants_presence(self) -> bool:
        """Does any namespace (the default included) turn presence on?"""
        return any(ns.presence for ns in (*self.namespaces.values(), self.default))

    def history_size_of(self, key: Hashable, otherwise: int) -> int:
        """The history size of the channel of ``key`` (a service's channel
        key: a string channel's key is the string), ``otherwise`` when its
        namespace sets none."""
        size = self.of(key if isinstance(key, str) else None).history_size
        return otherwise if size is None else size


def configured(owner: str, namespaces: Any, history_size: int) -> Namespaces | None:
    """A service's ``namespaces`` argument, checked: a :class:`Namespaces`, a
    mapping ``{name: Namespace}`` (made into one), or None; a namespace with
    a ``history_size`` needs the service's history on (ValueError)."""
    if namespaces is None:
        return None
    if isinstance(namespaces, Mapping):
        namespaces = Namespaces(namespaces)
    if not isinstance(namespaces, Namespaces):
        raise TypeError(f"{owner}(namespaces=...) is Namespaces(...) or a mapping "
                        f"{{name: Namespace(...)}}, got {type(namespaces).__name__}")
    sized = namespaces.history_sizes()
    recent: list[str | None] = [name for name, ns in namespaces.namespaces.items()
                                if ns.recent is not None]
    if namespaces.default.recent is not None:
        recent.append(None)
    if recent and not history_size:
        names = ", ".join("the default" if n is None else repr(n) for n in recent)
        raise ValueError(f"{owner}(namespaces=...): {names} set(s) recent but the service "
                         f"keeps no history to take the recent messages from; give "
                         f"{owner}(history_size=...) too")
    if sized and not history_size:
        names = ", ".join("the default" if n is None else repr(n) for n in sized)
        raise ValueError(f"{owner}(namespaces=...): {names} set(s) history_size but the service "
                         f"keeps no history; give {owner}(history_size=...) too (history adds "
                         "offset and epoch to every channel's messages)")
    return namespaces


def size_history(history: Any, namespaces: Namespaces | None) -> None:
    """Give a service's :class:`~.history.ChannelHistory` (or None) the
    namespaces' per-channel sizes, when any sets one."""
    if history is None or namespaces is None or not namespaces.history_sizes():
        return
    default = history.size
    history.sizes = lambda key: namespaces.history_size_of(key, default)

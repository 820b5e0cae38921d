"""Service, RPCService and the RPC decorators (protocol.md §2).

A service is plain synchronous Python.  :class:`Service` receives messages
from clients and sends messages to them; :class:`RPCService` turns messages of
the form ``{"command", "params", "callId"}`` into method calls::

    class Calculator(RPCService):
        @rpc_command
        def add(self, req, a, b=0):
            return a + b

Python names are snake_case; on the wire commands and parameters are
camelCase (``create_cursor(private_handle)`` is ``createCursor`` with
``privateHandle``).  Methods already written in camelCase (ported from
Snorky 0.1) keep their names.

Commands run under ``self.lock`` (a gevent RLock) so they can change the
service's state without races.  Declare ``@rpc_command(lock=False)`` for a
command that does its own locking, e.g. one that waits on I/O (an HTTP call,
a database query) and must not hold the lock meanwhile; such a command takes
``with self.lock:`` itself around the state it touches.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import gevent
import gevent.lock

from .. import checks, wire
from ..client import send_to_all as _send_to_all
from ..logs import RateLimitedLogger, printable
from ..metrics import counters, rpc_calls, rpc_errors

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .groups import Groups
    from .shared import SharedState

__all__ = [
    "Service", "RPCService", "Request", "RPCError", "InvalidMessage", "LimitAlias",
    "rpc_command", "rpc_asynchronous", "bounded_key", "RPCMeta", "ellipsis", "format_call",
]

log = logging.getLogger("snorky_sync.services")
_warn = RateLimitedLogger(log)
_encode_frame = wire.encode_frame
_clock = time.perf_counter
#: greenlet running a command under its service's lock -> what the command
#: asks to wait for once it let go of the lock (join_group's confirmations)
_after_lock: dict[Any, list[Callable[[], Any]]] = {}


def bounded_key(value: Any, max_size: int, error: str) -> Hashable:
    """``wire.json_key(value)``, or RPCError(error) if its JSON exceeds ``max_size`` bytes."""
    key = wire.json_key(value)
    size = len(key) if isinstance(key, str) else len(key[1])  # type: ignore[index]
    if size > max_size:
        raise RPCError(error)
    return key


class LimitAlias:
    """Another spelling of a limit (``MAX_CURSORS`` for ``max_cursors``):
    reading or setting it, on an instance or on the class, reads or sets
    the limit; a subclass that gives it a value (``MAX_CURSORS = 4``) sets
    the limit (:meth:`Service.__init_subclass__` moves it)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return getattr(obj if obj is not None else owner, self.name)

    def __set__(self, obj: object, value: Any) -> None:
        setattr(obj, self.name, value)


def _own_limits(cls: type) -> None:
    """A new service class's own limits: a value given to an alias moves to
    the limit it spells; every limit it sets (a ``max_*`` integer of a base
    class) is checked as a count."""
    for attr, value in list(vars(cls).items()):
        if isinstance(value, LimitAlias):
            continue
        alias = next((a for base in cls.__mro__[1:] for a in [vars(base).get(attr)]
                      if isinstance(a, LimitAlias)), None)
        limit = alias.name if alias is not None else attr
        if limit.startswith("max_") and not hasattr(value, "__get__") and any(
                isinstance(vars(base).get(limit), int) for base in cls.__mro__[1:]):
            checks.count(f"{cls.__name__}.{attr}", value)
        if alias is not None:
            if limit in vars(cls):
                raise TypeError(f"{cls.__name__} sets both {attr} and {limit}: they are one "
                                f"limit ({attr} is its older name); keep {limit}")
            delattr(cls, attr)  # the alias of the base applies again
            setattr(cls, limit, value)


class InvalidMessage(Exception):
    """A message that does not follow the protocol (logged and dropped)."""


class RPCError(Exception):
    """Raised by a command to answer the caller with an error text."""

    @property
    def message(self) -> str:
        if not self.args:
            return "Exception"
        text = self.args[0]
        return text if isinstance(text, str) else str(text)


class Service:
    """Base class of every service.

    Subclasses override :meth:`process_message_from` and may override
    :meth:`client_connected` / :meth:`client_disconnected` (the disconnect is
    where per-client state must be cleaned up).
    """

    hashable_messages = True
    """As in Snorky 0.1, the messages this service receives are hashable
    (:func:`snorky_sync.hashable.make_hashable`: lists and dicts can be used as
    dict keys).  The built-in services turn it off: they key by canonical JSON."""

    max_groups_per_client = 1000
    """Groups one client may be in (:meth:`join_group` raises ``RPCError("Too many groups")``);
    the constructor keyword of that name sets it on an instance."""
    max_group_name_size = 1024
    """Bytes of JSON of a group's name (``RPCError("Group name too long")``); the
    constructor keyword of that name sets it on an instance."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _own_limits(cls)
        # A client that disconnects leaves its groups, even when a subclass's
        # client_disconnected does not call super().
        own = cls.__dict__.get("client_disconnected")
        if own is not None and not getattr(own, "_leaves_groups", False):
            @functools.wraps(own)
            def client_disconnected(self: Service, client: Client) -> None:
                try:
                    own(self, client)
                finally:
                    groups = self.__dict__.get("_groups")
                    if groups is not None:
                        groups.leave_all(client)
            client_disconnected._leaves_groups = True  # type: ignore[attr-defined]
            cls.client_disconnected = client_disconnected  # type: ignore[method-assign]

    def __init__(self, name: str, *, max_groups_per_client: int | None = None,
                 max_group_name_size: int | None = None) -> None:
        """``name``: the service's name in its registry; the limits of its
        groups (:meth:`join_group`): see the class (None: the class's)."""
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}(name): the service name is a string, "
                            f"got {type(name).__name__}")
        if not name:
            raise ValueError("a service name is a non-empty string")
        self.name = name
        self.lock = gevent.lock.RLock()
        self.broker: Broker | None = None
        self.set_limits(max_groups_per_client=max_groups_per_client,
                        max_group_name_size=max_group_name_size)

    def set_limits(self, **limits: int | None) -> None:
        """Set the limits given (``max_cursors=4``) on this instance, each
        checked (a count >= 0); None keeps the class's.  The built-in
        services' constructors take their limits as keywords and call this."""
        for name, value in limits.items():
            if value is not None:
                setattr(self, name, checks.count(f"{type(self).__name__}({name}=...)", value))

    @property
    def cluster(self) -> Broker:
        """The broker, on the paths that only run once one is set (it is an
        error to get here without one)."""
        broker = self.broker
        if broker is None:
            raise RuntimeError(f"{self!r} has no broker (it was never registered)")
        return broker

    def use_broker(self, broker: Broker) -> None:
        """Called by the registry: messages for other processes go through ``broker``.

        Services that share state or fan out across processes override this
        to subscribe their topics (``broker.subscribe(topic, handler)``: every
        process receives them).  A service whose messages belong to channels
        routes them instead (``broker.route(family, handler)``), publishes
        to ``channel_topic(family, key)``, and calls ``broker.want(topic)``
        when a channel's first local subscriber arrives and
        ``broker.unwant(topic)`` when its last one leaves: then a process
        receives only the channels it has subscribers for (PubSub, Chat and
        groups do, through :class:`~.membership.Membership`; see
        :mod:`snorky_sync.brokers.base`).
        """
        self.broker = broker
        groups = self.__dict__.get("_groups")
        if groups is not None:  # routed once the service uses groups (two services of
            groups.use_broker(broker)  # one name, in two registries, may share a broker)

    # -- groups and shared state: the same code on one process and on many ----------
    def _group_table(self) -> Groups:
        groups = self.__dict__.get("_groups")
        if groups is None:
            from .groups import Groups
            groups = self.__dict__["_groups"] = Groups(self)
            broker = getattr(self, "broker", None)
            if broker is not None:
                groups.use_broker(broker)
        return groups

    def join_group(self, client: Client, group: Any, wait: bool = True) -> bool:
        """Make ``client`` a member of ``group`` (a JSON value, usually a
        string); False if it was one already.  :meth:`broadcast_group` then
        reaches it from any process.  It stays a member until
        :meth:`leave_group` or until it disconnects.

        With a distributed broker, the first member of a group in this process
        makes the process subscribe to the group; ``wait`` (default) waits for
        Redis to confirm it (one round trip, at most 5 s), so a broadcast made
        anywhere after this returns reaches the client.  Called in a command
        that runs under the service's lock (the default), it waits once the
        command let go of the lock, before the command's answer is sent: the
        other calls to the service do not wait for Redis meanwhile, and the
        first members of many groups arriving at once cost one ``SUBSCRIBE``.  Raises
        ``RPCError("Too many groups")`` past :attr:`max_groups_per_client` and
        ``RPCError("Group name too long")`` past :attr:`max_group_name_size`.
        """
        table = self._group_table()
        joined = table.join(client, group)
        if joined and wait:
            later = _after_lock.get(gevent.getcurrent())
            if later is not None:
                # a command under the lock: wait once it let go (before its answer),
                # not holding every other call of the service meanwhile
                later.append(lambda: table.confirm_group(group, 5.0))
            else:
                table.confirm_group(group, 5.0)
        return joined

    def leave_group(self, client: Client, group: Any) -> bool:
        """``client`` is no longer a member of ``group``; False if it was not."""
        return self._group_table().leave(client, group)

    def broadcast_group(self, group: Any, msg: Any) -> int:
        """Send ``msg`` to every member of ``group``, in this process and every
        other one (through the broker, when it is distributed), encoded once.
        Returns the members reached in this process.  Messages broadcast by one
        process arrive in the order it sent them."""
        return self._group_table().broadcast(group, msg)

    def group_members(self, group: Any) -> list[Client]:
        """The members of ``group`` connected to this process (only)."""
        return self._group_table().local_members(group)

    def groups_of(self, client: Client) -> list[Any]:
        """The groups ``client`` is a member of."""
        return self._group_table().of(client)

    @property
    def shared(self) -> SharedState:
        """Tables of JSON values shared by every process of this service: in
        Redis with a distributed broker, in this process otherwise
        (:class:`snorky_sync.services.shared.SharedState`)."""
        shared = self.__dict__.get("_shared")
        if shared is None:
            from .shared import SharedState
            shared = self.__dict__["_shared"] = SharedState(self)
        return shared

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def process_message_from(self, client: Client, msg: Any) -> None:
        """Handle one message (the envelope's ``message``) from ``client``."""
        raise NotImplementedError

    def send_message_to(self, client: Client, msg: Any) -> None:
        """Send ``msg`` to one client, wrapped in this service's envelope."""
        client.send_frame(_encode_frame(self.name, msg))

    def broadcast(self, clients: Iterable[Client], msg: Any) -> int:
        """Send ``msg`` to many clients, encoding it once.

        The same frame bytes object is queued to every client; returns the
        number of recipients.
        """
        return self.broadcast_frame(clients, _encode_frame(self.name, msg))

    @staticmethod
    def broadcast_frame(clients: Iterable[Client], frame: bytes) -> int:
        """Queue an already-encoded frame to many clients; returns how many."""
        return _send_to_all(clients, frame)

    def refuse_message(self, client: Client, msg: Any, reason: str) -> None:
        """A message the registry refused before :meth:`process_message_from`
        (nested too deep): logged (rate-limited) and dropped, as protocol.md §1
        says of malformed input.  :class:`RPCService` answers the call instead."""
        _warn.warning("invalid-message", "%s: dropped message from %s: %s", self.name,
                      printable(client.remote_address), reason)

    def client_connected(self, client: Client) -> None:
        """A client connected to the registry this service belongs to."""

    def client_disconnected(self, client: Client) -> None:
        """A client disconnected: forget everything about it (it leaves its
        groups even when an override does not call this)."""
        groups = self.__dict__.get("_groups")
        if groups is not None:
            groups.leave_all(client)


# -- RPC -------------------------------------------------------------------

_CAMEL_RE = re.compile(r"_([a-z0-9])")


def to_camel(name: str) -> str:
    """``create_cursor`` -> ``createCursor``; camelCase names are unchanged."""
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


class _CommandSpec:
    """What the dispatcher needs to know about one command, computed once."""

    __slots__ = ("func", "wire_name", "asynchronous", "lock", "required",
                 "allowed", "rename", "var_kw")

    def __init__(self, func: Callable[..., Any], name: str | None, asynchronous: bool,
                 lock: bool) -> None:
        self.func = func
        self.wire_name = name or to_camel(func.__name__)
        self.asynchronous = asynchronous
        self.lock = lock
        params = list(inspect.signature(func).parameters.values())[2:]  # self, req
        self.var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        rename = {to_camel(p.name): p.name for p in named}
        self.rename = rename if any(k != v for k, v in rename.items()) else None
        self.allowed = frozenset(rename)
        self.required = frozenset(
            to_camel(p.name) for p in named if p.default is p.empty)
        if any(p.kind is p.VAR_POSITIONAL or p.kind is p.POSITIONAL_ONLY for p in params):
            raise TypeError(f"RPC command {func.__name__} must take named parameters only")

    def explain(self, params: Any) -> str:
        """Why ``params`` do not fit this command (for the DEBUG log line of
        an ``Invalid params`` answer): the names missing and unexpected."""
        if not isinstance(params, dict):
            return f"params is {_kind(params)}, not an object"
        why = []
        missing = sorted(self.required - params.keys())
        if missing:
            why.append("missing " + ", ".join(missing))
        if not self.var_kw:
            unexpected = sorted(printable(k, 40) for k in params.keys() - self.allowed)
            if unexpected:
                why.append("unexpected " + ", ".join(unexpected[:10]) +
                           (", ..." if len(unexpected) > 10 else ""))
        takes = ", ".join(sorted(self.allowed)) or "no parameters"
        return "; ".join(why or ["does not fit"]) + f" (it takes: {takes})"

    def bind(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Keyword arguments for the call, or None if params don't fit."""
        keys = params.keys()
        if not self.required <= keys:
            return None
        if not self.var_kw and not keys <= self.allowed:
            return None
        rename = self.rename
        if rename is None:
            return params
        return {rename.get(k, k): v for k, v in params.items()}


def _kind(value: Any) -> str:
    """What JSON value a client sent, for a log line (hashable or not)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a JSON array"
    return f"a {type(value).__name__}"


def _param_names(params: Any) -> str:
    """A call's parameter names for a log line (never their values)."""
    if not isinstance(params, dict):
        return _kind(params)
    names = [printable(k, 40) for k in list(params)[:10]]
    return ", ".join(names) + (", ..." if len(params) > 10 else "")


_F = TypeVar("_F", bound=Callable[..., Any])


def _declare(func: _F | None, *, name: str | None, lock: bool,
             asynchronous: bool) -> _F | Callable[[_F], _F]:
    def decorate(f: _F) -> _F:
        # Stacked as in Snorky 0.1 (``@rpc_command @rpc_asynchronous``, either
        # order): the declarations add up.
        old_name, old_async, old_lock = getattr(f, "_rpc_spec", (None, False, True))
        spec = (name or old_name, asynchronous or old_async, lock and old_lock)
        marks: dict[str, Any] = {"_rpc_spec": spec, "is_rpc_command": True}  # 0.1's markers
        if spec[1]:
            marks["is_asynchronous"] = True
        for attr, value in marks.items():
            setattr(f, attr, value)
        return f
    return decorate(func) if func is not None else decorate


@overload
def rpc_command(func: _F, /) -> _F: ...
@overload
def rpc_command(*, name: str | None = None, lock: bool = True) -> Callable[[_F], _F]: ...
def rpc_command(func: _F | None = None, *, name: str | None = None,
                lock: bool = True) -> _F | Callable[[_F], _F]:
    """Declare a method ``(self, req, **params)`` as an RPC command.

    Its return value is the response ``data``.  Options: ``name`` (the wire
    name, default the camelCase of the method name) and ``lock`` (default
    True: run under ``self.lock``).
    """
    return _declare(func, name=name, lock=lock, asynchronous=False)


@overload
def rpc_asynchronous(func: _F, /) -> _F: ...
@overload
def rpc_asynchronous(*, name: str | None = None, lock: bool = True) -> Callable[[_F], _F]: ...
def rpc_asynchronous(func: _F | None = None, *, name: str | None = None,
                     lock: bool = True) -> _F | Callable[[_F], _F]:
    """Declare an RPC command that answers later with ``req.reply(data)``
    or ``req.error(text)``, e.g. from another greenlet."""
    return _declare(func, name=name, lock=lock, asynchronous=True)


def ellipsis(string: str, max_length: int = 100) -> str:
    """``string`` cut to ``max_length`` characters, ending in ``...`` if cut."""
    if len(string) <= max_length:
        return string
    return string[:max_length - 3] + "..."


def format_call(command: Any, params: Any) -> str:
    """A short text for a call, e.g. ``add({"a": 1, "b": 2})`` (for logs)."""
    try:
        text = json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        text = repr(params)
    return ellipsis(f"{command}({text})")


class Request:
    """One RPC call.  Answered exactly once, by :meth:`reply` or :meth:`error`.

    ``debug`` (Snorky 0.1): when set, an unexpected exception in the command
    propagates to the caller of :meth:`RPCService.process_request` instead of
    being answered ``Internal error`` (for unit tests of services).
    """

    __slots__ = ("service", "client", "command", "params", "call_id", "resolved", "debug")

    def __init__(self, service: RPCService, client: Client, msg: Any) -> None:
        if not isinstance(msg, dict) or "command" not in msg or "params" not in msg:
            raise InvalidMessage("an RPC message needs 'command' and 'params'")
        self.service = service
        self.client = client
        self.command = msg["command"]
        self.params = msg["params"]
        self.call_id = msg.get("callId")
        self.resolved = False
        self.debug = False

    def format_call(self) -> str:
        """A short text for this call (for logs)."""
        return format_call(self.command, self.params)

    def __repr__(self) -> str:
        return f"<Request {self.service.name}.{self.command} callId={self.call_id!r}>"

    def reply(self, data: Any = None) -> None:
        """Answer with ``{"type": "response", "data": data}``."""
        self._answer_with()
        if self.call_id is None:
            msg = {"type": "response", "data": data}
        else:
            msg = {"type": "response", "callId": self.call_id, "data": data}
        self.service.send_message_to(self.client, msg)

    def error(self, message: str) -> None:
        """Answer with ``{"type": "error", "message": message}``."""
        self._answer_with()
        self.service.send_message_to(
            self.client, {"type": "error", "callId": self.call_id, "message": message})

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
        """Run ``fn(*args, **kwargs)`` in a new greenlet and answer with what it
        returns (unless it answered itself); an :class:`RPCError` it raises
        answers with its text, anything else is logged with its traceback and
        answers ``Internal error`` — so the request is answered exactly once
        even when the background work fails.  Returns the greenlet."""
        return gevent.spawn(self._run, fn, args, kwargs)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = fn(*args, **kwargs)
        except RPCError as exc:
            if not self.resolved:
                self.error(str(exc.args[0]) if exc.args else "Exception")
            return
        except Exception:
            _warn.exception("command-raised", "%s.%s: background work raised (client %s)",
                            self.service.name, self.command, printable(self.client.remote_address))
            if not self.resolved:
                self.error("Internal error")
            return
        if not self.resolved:
            try:
                self.reply(result)
            except TypeError:
                _warn.exception("command-not-json", "%s.%s: background work returned a value "
                                "that is not JSON", self.service.name, self.command)
                self.resolved = False
                self.error("Internal error")

    def _answer_with(self) -> None:
        if self.resolved:
            raise RuntimeError(f"{self!r} was already answered")
        self.resolved = True


class CommandNames(frozenset[str]):
    """The wire names of a service's commands: a frozenset, as Snorky 0.1's
    ``RPCService.rpc_commands`` was; calling it gives them sorted."""

    def __call__(self) -> list[str]:
        return sorted(self)


class RPCMeta(type):
    """Metaclass of :class:`RPCService`: collects the ``@rpc_command`` methods of
    a class and its bases into ``_commands`` and ``rpc_commands``.

    When several attributes declare the same wire name (``create_cursor`` and
    its 0.1 alias ``createCursor``), the one defined in the most derived class
    wins; a plain attribute overriding a command removes it.
    """

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(name, bases, namespace, **kwargs)
        commands: dict[str, _CommandSpec] = {}
        by_attr: dict[str, _CommandSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, "_rpc_spec", None)
                if spec is not None:
                    command = _CommandSpec(value, *spec)
                    commands[command.wire_name] = by_attr[attr] = command
                elif attr in by_attr:  # overridden by a plain attribute
                    old = by_attr.pop(attr)
                    if commands.get(old.wire_name) is old:
                        del commands[old.wire_name]
        cls._commands = commands
        cls.rpc_commands = CommandNames(commands)

    def __setattr__(cls, name: str, value: Any) -> None:
        # ``DataSyncService.MAX_PENDING = 5`` sets the limit, as on an instance
        # (an alias given back, as monkeypatch's undo does, is the alias)
        alias = None if isinstance(value, LimitAlias) else next(
            (a for base in cls.__mro__ for a in [vars(base).get(name)] if isinstance(a, LimitAlias)), None)
        super().__setattr__(alias.name if alias is not None else name, value)


_SNAKE_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")


class RPCService(Service, metaclass=RPCMeta):
    """A service whose messages are calls of its ``@rpc_command`` methods.

    Mistakes in a call are answered with Snorky 0.1's texts (``Unknown
    command``, ``Invalid params``) and logged at DEBUG on the
    ``snorky_sync.services`` logger with what was wrong: the commands the
    service has, a method not declared with ``@rpc_command``, the parameter
    names missing or unexpected.
    """

    _commands: dict[str, _CommandSpec] = {}  # set by RPCMeta for every class

    slow_command_time: float = 0.5
    """Seconds a command may hold :attr:`lock` before a warning names it
    (rate-limited) and ``snorky_slow_commands_total`` counts it: every other
    call to this service waited meanwhile.  ``SNORKY_SLOW_COMMAND_TIME`` sets
    it for the services of a mounted registry; 0 turns it off."""

    def process_message_from(self, client: Client, msg: Any) -> None:
        try:
            req = Request(self, client, msg)
        except InvalidMessage as exc:
            _warn.warning("invalid-rpc", "%s: dropped message from %s: %s",
                          self.name, printable(client.remote_address), exc)
            return
        self.process_request(req)

    def refuse_message(self, client: Client, msg: Any, reason: str) -> None:
        """A call refused before dispatch (nested too deep) is answered as
        protocol.md §2 orders: ``Unknown command``, else ``Invalid params``.
        One that cannot be answered (not a call, or its ``callId`` is what
        nests too deep: it could not be echoed) is logged and dropped."""
        try:
            req = Request(self, client, msg)
        except InvalidMessage:
            Service.refuse_message(self, client, msg, reason)
            return
        if wire.too_deep(req.call_id, wire.MAX_DEPTH - 1):
            Service.refuse_message(self, client, msg, reason + " (its callId)")
            return
        command = req.command
        spec = self._commands.get(command) if type(command) is str else None
        rpc_errors[(self.name, command if spec is not None else "?")] += 1
        req.error("Invalid params" if spec is not None else "Unknown command")

    def process_request(self, req: Request) -> None:
        """Dispatch ``req`` to its command and answer it (protocol.md §2)."""
        command = req.command
        spec = self._commands.get(command) if type(command) is str else None
        if spec is None:
            rpc_errors[(self.name, "?")] += 1
            if log.isEnabledFor(logging.DEBUG):
                self._log_unknown_command(req)
            req.error("Unknown command")
            return
        key = (self.name, command)
        rpc_calls[key] += 1
        params = req.params
        kwargs = spec.bind(params) if isinstance(params, dict) else None
        if kwargs is None:
            rpc_errors[key] += 1
            if log.isEnabledFor(logging.DEBUG):
                _warn.debug("invalid-params", "%s.%s(%s) from %s: Invalid params: %s", self.name,
                            command, _param_names(params), printable(req.client.remote_address),
                            spec.explain(params))
            req.error("Invalid params")
            return
        try:
            if spec.lock:
                me = gevent.getcurrent()
                outer = _after_lock.get(me)  # (a command calling another's process_request)
                waits: list[Callable[[], Any]] = []
                with self.lock:
                    start = _clock()
                    _after_lock[me] = waits
                    try:
                        result = spec.func(self, req, **kwargs)
                    finally:
                        if outer is None:
                            del _after_lock[me]
                        else:
                            _after_lock[me] = outer
                        held = _clock() - start
                        if held > self.slow_command_time > 0:
                            self._slow_command(command, held)
                for wait in waits:  # join_group's confirmations (the lock let go)
                    wait()
            else:
                result = spec.func(self, req, **kwargs)
        except RPCError as exc:
            rpc_errors[key] += 1
            if not req.resolved:
                req.error(exc.message)
            return
        except Exception:
            rpc_errors[key] += 1
            if req.debug:
                raise
            # a bug, but one a client can trigger at will (a param of the wrong
            # type): rate-limited, so it cannot flood the log with tracebacks
            if _warn.allow("command-raised"):
                log.error("%s.%s raised (client %s): %s", self.name, command,
                          printable(req.client.remote_address), printable(req.format_call()),
                          exc_info=True)
            if not req.resolved:
                req.error("Internal error")
            return
        if not spec.asynchronous and not req.resolved:
            try:
                req.reply(result)
            except TypeError:
                _warn.exception("command-not-json", "%s.%s returned a value that is not JSON",
                                self.name, command)
                req.resolved = False
                req.error("Internal error")

    def _slow_command(self, command: str, held: float) -> None:
        counters["slow_commands"] += 1
        _warn.warning("slow-command:" + self.name,
                      "%s.%s held the service's lock for %.2f s (SNORKY_SLOW_COMMAND_TIME %s s): "
                      "every other call to %s waited. Do slow work (I/O, sleeps, heavy "
                      "computation) outside the lock: @rpc_command(lock=False) taking "
                      "`with self.lock:` only around the state, or req.spawn(...)",
                      self.name, command, held, self.slow_command_time, self.name)

    def _log_unknown_command(self, req: Request) -> None:
        """The DEBUG line of an ``Unknown command`` answer: what the service has,
        or that the method exists without ``@rpc_command``."""
        command = req.command
        call = f"{self.name}.{printable(command, 80)}({_param_names(req.params)})"
        if type(command) is not str:
            why = f"the command is {_kind(command)}, not a string"
        else:
            why = f"{type(self).__name__} has no command {printable(command, 80)}"
            for attr in dict.fromkeys((command, _SNAKE_RE.sub(r"_\1", command).lower())):
                if attr.startswith("_"):
                    continue
                value = inspect.getattr_static(type(self), attr, None)
                if callable(value) and getattr(value, "_rpc_spec", None) is None:
                    why = (f"{type(self).__name__}.{attr} is a method not declared with "
                           "@rpc_command")
                    break
            commands = ", ".join(sorted(self._commands)[:30]) or "none"
            why += f" (its commands: {commands})"
        _warn.debug("unknown-command", "%s from %s: Unknown command: %s", call,
                    printable(req.client.remote_address), why)

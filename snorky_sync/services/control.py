"""ControlService: the server's power over live connections, for the backend.

Mount it in a **backend** registry (never a frontend one: any page could
then disconnect anyone)::

    backend = ServiceRegistry([ControlService("control"), ...])
    snorky.backend("/backend", backend, api_key=key)

and call it over ``/backend`` or with ``SnorkyBackend``::

    SnorkyBackend(HTTPTransport(url, key)).call("control", "disconnect",
                                               identity="u42", reconnect=False, reason="banned")

``disconnect({identity, reconnect=true, reason=""})`` closes every
connection (WebSocket or SockJS session) of ``identity`` on every process of
the app: those of the process that answers at once, the others' through the
broker (with ``SNORKY_REDIS_URL``: every process that shares the Redis
broker closes its own on receipt).  The close code says whether the page may
come back: **4002** (reconnect allowed) or **4003** (do not reconnect:
snorky.js stops reconnecting), with ``reason`` as the close reason
(default ``"Disconnected"``).  It answers ``{"closed": n}``, ``n`` being the
connections closed *by the process that answered*; the message to the other
processes has left this one (``broker.flush``) before the answer.

``info()`` answers ``{"processes": [...]}``: one object per process of the
app, the answering process first, then every other one that answered within
:attr:`ControlService.info_timeout` (1 s; the answer comes as soon as every
peer the broker knows of has answered), each
``{"pid", "host", "origin", "connections", "identities", "slow",
"slowDisconnects"}`` (``origin``: the process's broker id, null without a
distributed broker; ``connections``: its open WebSockets and SockJS sessions
of the app(s) mounting the service; ``identities``: how many distinct
identities they belong to; ``slow``: how many of those connections are slow
consumers now, their backlog past half their outbound queue's budget
(``SNORKY_MAX_QUEUE_FRAMES`` / ``SNORKY_MAX_QUEUE_BYTES``; past all of it the
connection is cut); ``slowDisconnects``: the connections the process has cut
as slow consumers since it started, every app of it).

``connections({service=null, limit=100})`` answers ``{"processes": [...]}``
as ``info()`` does, each process's object having besides ``"clients"``: its
first ``limit`` (at most 1000) open connections, oldest first, each
``{"id", "identity", "remote", "owed", "slow"}`` (``id``: the connection's
number in its process; ``owed``: bytes queued for it; ``slow``: past half its
queue budget), plus ``"channels"`` (its channels in the frontend service
named ``service``, PubSub or Chat) when ``service`` is given; and ``"more"``: how
many connections were left out.  For an operator's view (the operator page,
docs/operator.md), not for bulk use: every process lists its connections.

``presence({service, channel})`` answers ``{"presence": [entries]}`` and
``presenceStats({service, channel})`` ``{"clients": n, "users": m}``: the
presence of ``channel`` in the frontend service named ``service`` (PubSub or
Chat created with ``presence=True``; :mod:`.presence`), every process's
connections, the same whichever process answers (it first applies every
change the broker carried before the call).  ``Unknown service`` when the
app has no such service, ``Presence not enabled`` when it keeps none.

``subscribe({identity, service, channel})`` / ``unsubscribe(...)``:
server-side subscriptions of every connection of ``identity``, on every
process, to a channel of the frontend PubSub or Chat named ``service``,
through the read authorization of a page's subscribe (Chat: of a page's
join, the other members told ``presence`` ``joined`` / ``left``); each page
is told (``{"type": "subscribed" | "unsubscribed", "channel"}``; Chat's
``subscribed`` also carries ``members``, what a join answers).  They answer
``{"subscribed": n, "refused": r, "processes": k}`` /
``{"unsubscribed": n, "processes": k}`` summed over the processes that
answered within :attr:`ControlService.info_timeout`, as ``info()`` waits;
``channels({service})`` answers ``{"channels": [{"channel",
"subscribers"}, ...]}`` the same way (counts summed).  A process runs the
other processes' subscribe/unsubscribe orders in one greenlet, in order
(never in the broker's listener: a read hook may wait, and Redis's
confirmation of a channel comes through the listener).

The service acts on the connections of the app(s) whose Snorky mounted its
registry (``Snorky.backend``: :meth:`use_runtime`), so register it before
the registry is mounted.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.queue

from .. import wire
from ..logs import printable
from ..metrics import counters
from .base import Request, RPCError, RPCService, rpc_command

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from ..endpoints.connections import Connections
    from ..runtime import Runtime

__all__ = ["ControlService", "CLOSE_DISCONNECTED", "CLOSE_DO_NOT_RECONNECT"]

#: orders another process runs in the service's order greenlet (in the order sent),
#: not in the broker's listener: they may wait (a read hook, Redis confirming a channel)
_QUEUED_OPS = frozenset({"subscribe", "unsubscribe"})

log = logging.getLogger("snorky_sync.control")

#: close code of ``disconnect(reconnect=true)``: the page may reconnect
CLOSE_DISCONNECTED = 4002
#: close code of ``disconnect(reconnect=false)``: snorky.js does not reconnect
CLOSE_DO_NOT_RECONNECT = 4003
#: the longest close reason, in UTF-8 bytes (RFC 6455: 125 bytes of payload, 2 for the code)
MAX_REASON_BYTES = 123
#: the most connections ``connections()`` lists per process (its ``limit``), and
#: channels per connection
MAX_LISTED = 1000


class ControlService(RPCService):
    """Backend commands acting on the app's connections on every process (see the module)."""

    hashable_messages = False  # identities keyed by canonical JSON (wire.json_key)

    #: seconds ``info()`` waits for the other processes' answers
    info_timeout = 1.0

    def __init__(self, name: str = "control") -> None:
        super().__init__(name)
        self.connections: list[Connections] = []   # those of every app that mounted it
        self.runtimes: list[Runtime] = []           # those apps (their registries' services)
        self._orders: gevent.queue.Queue[dict[str, Any]] | None = None  # subscribe/unsubscribe from peers
        self._subscribed: list[Broker] = []         # brokers whose topic it listens to
        # info() calls waiting for answers: id -> (answers, origins answered, all in)
        self._asking: dict[str, tuple[list[Any], set[str], gevent.event.Event]] = {}

    @property
    def topic(self) -> str:
        """The broker topic every process of the service listens to."""
        return f"control:{self.name}"

    def use_runtime(self, runtime: Runtime) -> None:
        """Called by :meth:`Runtime.mount <snorky_sync.runtime.Runtime.mount>`:
        act on that app's connections."""
        if runtime.connections not in self.connections:
            self.connections.append(runtime.connections)
        if runtime not in self.runtimes:
            self.runtimes.append(runtime)

    def use_broker(self, broker: Broker) -> None:
        super().use_broker(broker)
        if broker.distributed and broker not in self._subscribed:
            broker.subscribe(self.topic, self._heard)
            broker.subscribe(self._answers_topic(broker.origin.hex()), self._answered)
            self._subscribed.append(broker)

    def _answers_topic(self, origin: str) -> str:
        # snorky:control_answers:NAME:ORIGIN, the shape of every snorky topic in Redis
        # (family, name, hex: tests/security/test_redis_routing.py)
        return f"control_answers:{self.name}:{origin}"

    # -- commands -------------------------------------------------------------------
    @rpc_command(lock=False)
    def disconnect(self, req: Request, identity: Any, reconnect: bool = True,
                   reason: str = "") -> dict[str, int]:
        """Close every connection of ``identity``, in every process: 4002 when
        ``reconnect``, else 4003, with ``reason``.  ``{"closed": n}``: how
        many this process closed."""
        if identity is None:
            raise RPCError("Invalid identity")
        if not isinstance(reconnect, bool):
            raise RPCError("Invalid reconnect")
        if not isinstance(reason, str):
            raise RPCError("Invalid reason")
        if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
            raise RPCError("Reason too long")
        return {"closed": self._disconnect(identity, reconnect, reason)}

    def disconnect_session(self, identity: Any, session: str, reconnect: bool = False,
                           reason: str = "Logged out") -> int:
        """Close the connections of ``identity`` opened with the login session
        ``session`` (what its ``authenticate`` hook returned as
        ``Authenticated(identity, session=...)``), in every process, as
        :meth:`disconnect` does (4003 unless ``reconnect``): the call behind
        :meth:`Snorky.logout <snorky_sync.flask_ext.Snorky.logout>`.  How many
        this process closed."""
        if len(reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
            raise ValueError(f"disconnect_session(reason): at most {MAX_REASON_BYTES} UTF-8 bytes")
        return self._disconnect(identity, reconnect, reason, session)

    def _disconnect(self, identity: Any, reconnect: bool, reason: str,
                    session: str | None = None) -> int:
        order = {"op": "disconnect", "identity": identity, "reconnect": reconnect,
                 "reason": reason}
        if session is not None:
            order["session"] = session
        broker = self.broker
        if broker is not None and broker.distributed:
            broker.publish(self.topic, wire.encode(order))
        closed = self._apply(order)
        if broker is not None and broker.distributed:
            broker.flush()  # on its way to the other processes before the answer
        return closed

    @rpc_command(lock=False)
    def info(self, req: Request) -> dict[str, list[Any]]:
        """Every process's ``{"pid", "host", "origin", "connections",
        "identities", "slow", "slowDisconnects"}``, this one first (see the module)."""
        here, answers = self._gather({"op": "info"}, self._info)
        return {"processes": [here, *answers]}

    def _gather(self, order: dict[str, Any], here: Callable[[], Any]) -> tuple[Any, list[Any]]:
        """Send ``order`` to every other process, run ``here()`` in this one,
        then wait (at most :attr:`info_timeout`; not at all when the broker
        knows of no peer) for the other processes' answers: ``(what here()
        returned, [each other process's answer])``.  Without a distributed
        broker: ``(here(), [])``.  The other processes answer in
        :meth:`_heard` (``_answer_order``)."""
        broker = self.broker
        if broker is None or not broker.distributed or broker not in self._subscribed:
            return here(), []
        ask = os.urandom(8).hex()
        answers: list[Any] = []
        origins: set[str] = set()
        done = gevent.event.Event()
        self._asking[ask] = (answers, origins, done)
        try:
            broker.publish(self.topic, wire.encode({**order, "id": ask,
                                                    "reply": broker.origin.hex()}))
            mine = here()
            broker.flush()
            if getattr(broker, "peers", None):
                done.wait(self.info_timeout)
        finally:
            del self._asking[ask]
        return mine, list(answers)

    # -- server-side subscriptions, channels (issue #24 item 2) ------------------------
    @rpc_command(lock=False)
    def subscribe(self, req: Request, identity: Any, service: Any, channel: Any) -> dict[str, int]:
        """Subscribe every connection of ``identity``, on every process, to
        ``channel`` of the frontend service named ``service`` (PubSub, or Chat:
        joined), through the same read authorization as a page's subscribe (join).  Answers once the
        processes answered (at most :attr:`info_timeout`): ``{"subscribed": n,
        "refused": r, "processes": k}`` summed over the ``k`` processes that
        answered (this one included): ``n`` connections subscribed now (not
        those that were already), ``r`` refused by the read authorization
        or a limit."""
        self._target_check(identity, service, channel)
        here, answers = self._gather(
            {"op": "subscribe", "identity": identity, "service": service, "channel": channel},
            lambda: self._subscribe_here(identity, service, channel))
        return self._summed([here, *answers], ("subscribed", "refused"))

    @rpc_command(lock=False)
    def unsubscribe(self, req: Request, identity: Any, service: Any, channel: Any) -> dict[str, int]:
        """Take every connection of ``identity``, on every process, out of
        ``channel`` of ``service`` (the page is told).  ``{"unsubscribed": n,
        "processes": k}`` as :meth:`subscribe`."""
        self._target_check(identity, service, channel)
        here, answers = self._gather(
            {"op": "unsubscribe", "identity": identity, "service": service, "channel": channel},
            lambda: self._unsubscribe_here(identity, service, channel))
        return self._summed([here, *answers], ("unsubscribed",))

    @rpc_command(lock=False)
    def channels(self, req: Request, service: Any) -> dict[str, list[Any]]:
        """The channels of ``service`` with subscribers in any process that
        answered within :attr:`info_timeout`: ``{"channels": [{"channel",
        "subscribers"}, ...]}``, ``subscribers`` summed over the processes;
        string channels first, by name, then the others by canonical JSON."""
        self._services_named(service)
        here, answers = self._gather({"op": "channels", "service": service},
                                     lambda: self._channels_here({"service": service}))
        total: dict[Any, list[Any]] = {}
        for pairs in [here, *answers]:
            for channel, n in pairs:
                key = wire.json_key(channel)
                if key in total:
                    total[key][1] += n
                else:
                    total[key] = [channel, n]
        ordered = sorted(total.items(), key=lambda item: (0, item[0]) if isinstance(item[0], str)
                         else (1, item[0][1].decode()))  # names, then others by JSON
        return {"channels": [{"channel": channel, "subscribers": n} for _, (channel, n) in ordered]}

    @rpc_command(lock=False, name="connections")  # self.connections: the apps' Connections
    def list_connections(self, req: Request, service: Any = None, limit: Any = 100) -> dict[str, list[Any]]:
        """Every process's open connections (see the module): ``{"processes":
        [{"pid", "host", "origin", "clients": [...], "more": n}, ...]}``, this
        one first, the others that answered within :attr:`info_timeout`."""
        if type(limit) is not int or not 1 <= limit <= MAX_LISTED:
            raise RPCError("Invalid limit")
        if service is not None:
            self._services_named(service)  # Unknown service
        order = {"op": "connections", "service": service, "limit": limit}
        here, answers = self._gather(order, lambda: self._connections_here(order))
        return {"processes": [here, *answers]}

    def _connections_here(self, order: dict[str, Any]) -> dict[str, Any]:
        """This process's part of :meth:`connections`: its first ``limit``
        connections (oldest first), each with its channels of ``service``."""
        limit = int(order["limit"])
        clients = sorted((client for c in self.connections for client in list(c.live)),
                         key=lambda client: client.id)
        targets: list[Any] = []
        if order.get("service") is not None:
            try:
                targets = self._services_named(order["service"])
            except RPCError:
                targets = []
        listed = []
        for client in clients[:limit]:
            entry: dict[str, Any] = {"id": client.id, "identity": client.identity,
                                     "remote": client.remote_address, "owed": client.owed_bytes(),
                                     "slow": client.lagging()}
            if targets:
                keys = [key for target in targets
                        for key in getattr(target, "subscriptions", {}).get(client, ())]
                named = sorted(k for k in keys if isinstance(k, str))
                others = [wire.decode(k[1]) for k in keys if not isinstance(k, str)]
                entry["channels"] = (named + others)[:MAX_LISTED]
            listed.append(entry)
        return {**self._info(), "clients": listed, "more": max(0, len(clients) - limit)}

    # what the commands do in each process
    def _services_named(self, name: Any) -> list[Any]:
        """The frontend services called ``name`` in the app(s) that mounted
        this one and that take server-side subscriptions (``subscribe_client``);
        RPCError ``Unknown service`` when there is none."""
        found: list[Any] = []
        if isinstance(name, str):
            for runtime in self.runtimes:
                for registry in runtime.registries:
                    target = registry.get_service(name)
                    if (target is not None and callable(getattr(target, "subscribe_client", None))
                            and target not in found):
                        found.append(target)
        if not found:
            raise RPCError("Unknown service")
        return found

    def _target_check(self, identity: Any, service: Any, channel: Any) -> None:
        """The parameters of subscribe/unsubscribe, checked before any process acts."""
        if identity is None:
            raise RPCError("Invalid identity")
        for target in self._services_named(service):
            target.channel_key(channel)  # RPCError "Channel too long"

    def _clients_of(self, identity: Any) -> list[Client]:
        return [client for connections in self.connections for client in connections.clients_of(identity)]

    def _subscribe_here(self, identity: Any, service: str, channel: Any) -> dict[str, int]:
        subscribed = refused = 0
        try:
            targets = self._services_named(service)
        except RPCError:
            return {"subscribed": 0, "refused": 0}
        for client in self._clients_of(identity):
            for target in targets:
                if not target.serves(client):
                    continue
                try:
                    if target.subscribe_client(client, channel):
                        subscribed += 1
                except RPCError as exc:
                    refused += 1
                    log.info("%s: %s not subscribed to %s of %s: %s", self.name, printable(identity),
                             printable(wire.encode(channel), 100), service, exc.message)
        return {"subscribed": subscribed, "refused": refused}

    def _unsubscribe_here(self, identity: Any, service: str, channel: Any) -> dict[str, int]:
        unsubscribed = 0
        try:
            targets = self._services_named(service)
        except RPCError:
            return {"unsubscribed": 0}
        for client in self._clients_of(identity):
            for target in targets:
                if target.unsubscribe_client(client, channel):
                    unsubscribed += 1
        return {"unsubscribed": unsubscribed}

    def _channels_here(self, order: dict[str, Any]) -> list[list[Any]]:
        """``[[channel, subscribers], ...]`` of this process."""
        try:
            targets = self._services_named(order["service"])
        except RPCError:
            return []
        return [[channel, n] for target in targets for channel, n in target.channel_counts()]

    @staticmethod
    def _summed(answers: list[Any], fields: tuple[str, ...]) -> dict[str, int]:
        total = dict.fromkeys(fields, 0)
        for answer in answers:
            for field in fields:
                total[field] += int(answer.get(field, 0))
        total["processes"] = len(answers)
        return total

    def _queue_order(self, order: dict[str, Any]) -> None:
        """Another process's subscribe/unsubscribe: run by one greenlet, in
        the order received (never in the broker's listener, which must keep
        reading: Redis's confirmation of a channel comes through it)."""
        if self._orders is None:
            self._orders = gevent.queue.Queue()
            gevent.spawn(self._run_orders, self._orders)
        self._orders.put(order)

    def _run_orders(self, orders: gevent.queue.Queue[dict[str, Any]]) -> None:
        for order in orders:
            try:
                run = self._subscribe_here if order["op"] == "subscribe" else self._unsubscribe_here
                self._reply(order, run(order["identity"], order["service"], order["channel"]))
            except Exception:
                log.exception("%s: control order %s failed", self.name, printable(order.get("op")))

    def _info(self) -> dict[str, Any]:
        broker = self.broker
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "origin": broker.origin.hex() if broker is not None and broker.distributed else None,
                "connections": sum(len(c) for c in self.connections),
                "identities": sum(len(c.per_identity) for c in self.connections),
                "slow": sum(client.lagging() for c in self.connections for client in list(c.live)),
                "slowDisconnects": counters["slow_consumer_disconnects"]}

    # -- every process ----------------------------------------------------------------
    def _heard(self, data: bytes) -> None:
        """An order from another process (the broker's listener greenlet)."""
        try:
            order = wire.decode(data)
            op = order.get("op")
            if op == "disconnect":
                self._apply(order)
            elif op == "info":
                self._reply(order, self._info())
            elif op in _QUEUED_OPS:  # they may wait (hooks, Redis): not in the listener
                self._queue_order(order)
            elif op == "channels":
                self._reply(order, self._channels_here(order))
            elif op == "connections":
                self._reply(order, self._connections_here(order))
        except Exception:
            log.exception("%s: bad control message from the broker", self.name)

    def _answered(self, data: bytes) -> None:
        """Another process's answer to one of this one's :meth:`_gather`."""
        try:
            answer = wire.decode(data)
            asking = self._asking.get(answer["id"])
            if asking is None:
                return  # late: that call answered already
            answers, origins, done = asking
            answers.append(answer["data"])
            origins.add(answer["origin"])
            peers = getattr(self.broker, "peers", {})
            if all(origin.hex() in origins for origin in list(peers)):
                done.set()
        except Exception:
            log.exception("%s: bad control answer from the broker", self.name)

    def _reply(self, order: dict[str, Any], data: Any) -> None:
        """Answer another process's :meth:`_gather`."""
        broker = self.cluster
        broker.publish(self._answers_topic(str(order["reply"])),
                       wire.encode({"id": order["id"], "origin": broker.origin.hex(), "data": data}))

    def _apply(self, order: dict[str, Any]) -> int:
        identity = order["identity"]
        reason = order.get("reason") or "Disconnected"
        code = CLOSE_DISCONNECTED if order.get("reconnect", True) else CLOSE_DO_NOT_RECONNECT
        session = order.get("session")  # only the connections of that login session
        closed = 0
        for connections in self.connections:
            for client in connections.clients_of(identity):
                if session is not None and client.login_session != session:
                    continue
                if not (client.closed or client.is_closing):  # closing already: counted once
                    client.close(code, reason)
                    closed += 1
        if closed:
            log.info("%s: closed %d connection(s) of %s (%d %s)", self.name, closed,
                     printable(identity), code, printable(reason))
        return closed

    # -- presence (issue #24 item 4) ------------------------------------------------------
    def _presence_of(self, name: Any) -> Any:
        """The :class:`~.presence.Presence` of the frontend service called
        ``name`` in the app(s) that mounted this one."""
        from .presence import NOT_ENABLED
        known = False
        if isinstance(name, str):
            for runtime in self.runtimes:
                for registry in runtime.registries:
                    target = registry.get_service(name)
                    if target is None or not hasattr(target, "presence_state"):
                        continue
                    known = True
                    if target.presence_state is not None:
                        return target.presence_state
        raise RPCError(NOT_ENABLED if known else "Unknown service")

    @rpc_command(lock=False)
    def presence(self, req: Request, service: Any, channel: Any) -> dict[str, Any]:
        """``{"presence": [{"client", "identity", "meta"}, ...]}``: every
        connection in ``channel`` of ``service``, on every process."""
        state = self._presence_of(service)
        return {"presence": state.read_entries(state.key(channel))}

    @rpc_command(lock=False)
    def presence_stats(self, req: Request, service: Any, channel: Any) -> dict[str, int]:
        """``{"clients": n, "users": m}`` of ``channel`` of ``service``: its
        connections and distinct identities, on every process."""
        state = self._presence_of(service)
        stats: dict[str, int] = state.read_stats(state.key(channel))
        return stats

"""DataSyncService: the frontend of DataSync (protocol.md §3).

Browsers call ``acquireSubscription(token)`` with a token the web application
got from :class:`~snorky_sync.services.datasync.backend.DataSyncBackend`, and
``cancelSubscription(token)``.  Deltas published through the backend are
routed by the dealers and delivered as ``{"type": "delta", "delta": ...}``.

The service owns all DataSync state; the backend only calls
:meth:`DataSyncService.do_authorize_subscription` and
:meth:`DataSyncService.do_publish_deltas`, which take ``self.lock``.

A published delta flows one way: the dealers of its model turn it into
``(item, delta)`` pairs (``Dealer.route_delta``, through ``service.dm.route``), and the service decides what
each pair becomes by its subscription's state (``DataSyncService._dispatch``):
sent (once encoded for all its recipients), buffered until the client
acquires the token, numbered and kept for a resumption, or dropped.
On this path subscriptions and dealers never call the service.  Snorky
0.1's entry points keep their 0.1 effect and come back to it: ``dm.deliver_delta(delta)``
publishes (the manager's ``sink``), and a delta pushed with
``Subscription.deliver_delta`` outside a routing pass (a dealer's
``deliver_delta`` called directly, ``got_client``) is dispatched at once
(:meth:`DataSyncService.dispatch_pushed`).

With a distributed broker (Redis) deltas are routed by model: a batch goes
out as one message per model, on that model's topic, and a process
subscribes to a model's topic only while it holds a subscription (pending,
acquired, detached) with an item of a dealer of that model.  A pending
subscription lives on the process that authorized it (its owner); the
others only remember which process that is (the authorization is announced
on the service's topic).  A browser acquiring it on another process takes it
over: that process registers it, subscribes to its models' topics, waits for
Redis to confirm them and publishes a marker on each; the owner keeps the
deltas it routes to it until each model's marker and hands them over, the
taker keeps those after its marker: each delta once, each model's in order.
A resumption of a subscription detached on another process is taken over
the same way (:meth:`DataSyncService._take_over`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from ... import checks, wire
from ...brokers.base import BrokerUnavailable, channel_topic
from ...logs import RateLimitedLogger, printable
from ...metrics import counters
from ...timeout import GeventTimeoutFactory
from .. import retained
from ..base import LimitAlias, RPCError, RPCService, rpc_command
from ..history import new_epoch
from .dealers import BadQuery, Dealer
from .deltas import Delta, validate_deltas
from .managers import DealerManager, SubscriptionManager
from .managers.subscription import token_of
from .subscriptions import (
    ACQUIRED,
    CANCELLED,
    DETACHED,
    PENDING,
    RESUMING,
    ResumeLog,
    Subscription,
    SubscriptionItem,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...brokers.base import Broker
    from ...brokers.redis_resume import RedisResumeStore
    from ...client import Client
    from ..base import Request

__all__ = ["DataSyncService"]

log = logging.getLogger("snorky_sync.services.datasync")
_warn = RateLimitedLogger(log)

MAX_REQUESTER_SIZE = 256
"""Characters of a ``requester`` name (``Invalid requester`` beyond)."""

MAX_EPOCH_SIZE = 64
"""Characters of the ``epoch`` a resumption names (``Invalid params`` beyond;
the server's own are 16)."""


REMOTE_PENDING = 100000
"""Authorizations made on other processes this process remembers (token ->
the process that holds the pending subscription); beyond it the oldest are
forgotten (acquiring one here then answers ``No such subscription``)."""


class _Handover:
    """This process taking over a subscription held by another (its owner):
    a pending one being acquired here, or one detached there being resumed here."""

    __slots__ = ("items", "requester", "identity", "done", "answered", "ok", "sub", "deltas")

    def __init__(self, items: list[tuple[str, Any]], requester: Any, identity: Any) -> None:
        self.items = items
        self.requester = requester
        self.identity = identity
        self.done = gevent.event.Event()  # the owner answered and our markers came back
        self.answered = False             # the owner answered
        self.ok = False                   # ... with the hand-over
        self.sub: Subscription | None = None  # registered here, RESUMING
        self.deltas: list[Any] = []       # a pending one's: what the owner had buffered

    def check(self) -> None:
        """Done once the owner answered and, if it handed the subscription over,
        every marker of ours came back (from there on our own buffer takes
        each model's deltas; before, the owner's)."""
        sub = self.sub
        if self.answered and (not self.ok or sub is None or not sub.gate):
            self.done.set()


class DataSyncService(RPCService):
    """Frontend DataSync: ``acquireSubscription``, ``cancelSubscription``.

    ``dealers`` are dealer classes (instantiated here, as in Snorky 0.1) or
    instances.  Limits: constructor keywords; the class attributes are the
    defaults (their snorky_sync 0.2 names, ``MAX_PENDING``, ... are aliases).
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_pending = 10000
    """Authorized subscriptions not yet acquired, in this process.  At the
    cap, an authorization for a requester that holds the most of them is
    refused (``Too many pending subscriptions``); one for anybody else
    evicts the oldest pending subscription of the requester holding the
    most, so one requester's flood never locks the others out."""

    max_pending_per_requester = 100
    """Pending subscriptions of one named requester (``authorizeSubscription``'s
    ``requester``: the page's user or client address); beyond it that
    requester's oldest pending subscription is evicted (acquiring it then
    answers ``No such subscription``).  Authorizations naming no requester
    (Snorky 0.1's backends) are bounded by ``max_pending`` only."""

    max_buffered_deltas = 10000
    """Deltas buffered for one pending subscription.  Beyond this the
    subscription is cancelled (logged and counted) rather than growing
    without bound: acquiring it then answers ``No such subscription``, as
    for an expired one, and the page reloads its data."""

    max_subscriptions = 1000
    """Acquired subscriptions per connection (``Too many subscriptions``)."""

    MAX_PENDING = LimitAlias("max_pending")
    MAX_PENDING_PER_REQUESTER = LimitAlias("max_pending_per_requester")
    MAX_BUFFERED_DELTAS = LimitAlias("max_buffered_deltas")
    MAX_SUBSCRIPTIONS_PER_CLIENT = LimitAlias("max_subscriptions")

    def __init__(self, name: str, dealers: Iterable[type[Dealer] | Dealer] = (),
                 resume_window: float = 0.0, resume_buffer: int = 1000, *,
                 max_subscriptions: int | None = None, max_pending: int | None = None,
                 max_pending_per_requester: int | None = None,
                 max_buffered_deltas: int | None = None) -> None:
        """``resume_window`` (seconds, 0: off, 0.1's frames): a subscription whose
        connection drops waits that long for the page to come back and
        resume it (``acquireSubscription({token, since, epoch})``), keeping the
        last ``resume_buffer`` deltas it was sent; deltas then carry ``seq``
        and ``epoch``.  The limits: see the class (None: the class's, or the
        settings' once mounted)."""
        super().__init__(name)
        self.resume_window = checks.seconds("DataSyncService(resume_window=...)", resume_window)
        self.resume_buffer = checks.count("DataSyncService(resume_buffer=...)", resume_buffer, 1)
        self.set_limits(max_subscriptions=max_subscriptions, max_pending=max_pending,
                        max_pending_per_requester=max_pending_per_requester,
                        max_buffered_deltas=max_buffered_deltas)
        self.resume_timeout_factory = None  # timers of the resume window (snorky_sync.timeout)
        self._seq = 0
        self.epoch = new_epoch()
        """Names this service's sequence of ``seq`` (a new one per process: a
        restarted server numbers its deltas from 1 again).  Sent beside ``seq``."""
        self.dm = DealerManager(sink=self._publish_delta)
        """The dealers (Snorky 0.1's dealer manager; its ``deliver_delta``
        publishes through this service)."""
        self.sm = SubscriptionManager()
        """The subscriptions (Snorky 0.1's subscription manager)."""
        self.dealers_by_name = self.dm.dealers_by_name
        self.dealers_by_model = self.dm.dealers_by_model
        self.subscriptions = self.sm.subscriptions_by_token     # token -> every live subscription
        self.pending = self.sm.pending                          # token -> not yet acquired
        self.subscriptions_by_client = self.sm.subscriptions_by_client
        self._logs: dict[Any, ResumeLog] = {}  # client -> its resumable subscriptions' log
        # with a Redis broker: the detached subscriptions, resumable on any process
        self._resume_store: RedisResumeStore | None = None
        self._handovers: dict[str, _Handover] = {}  # token -> taking it over from another process
        # with a distributed broker: token -> (owner, items, requester, deadline) of the
        # pending subscriptions other processes authorized (see REMOTE_PENDING)
        self._remote: dict[str, tuple[str, list[tuple[str, Any]], Any, float]] = {}
        # a subclass overriding deliver_delta (as 0.1 allowed) gets one call per
        # client and delta instead of the encode-once batch
        self._deliver_overridden = type(self).deliver_delta is not DataSyncService.deliver_delta
        # resumable subscriptions need seq in the frames: not with a deliver_delta override
        self._resumable = self.resume_window > 0 and not self._deliver_overridden
        if isinstance(dealers, (str, bytes, dict)) or not hasattr(dealers, "__iter__"):
            raise TypeError(f"DataSyncService(name, dealers): dealers is a list of Dealer classes "
                            f"or instances, got {type(dealers).__name__}")
        for dealer in dealers:
            self.register_dealer(dealer)

    # -- dealers -------------------------------------------------------------
    def register_dealer(self, dealer: type[Dealer] | Dealer) -> Dealer:
        """Accept subscriptions for ``dealer`` (a class is instantiated); returns the instance."""
        if isinstance(dealer, type):
            if not issubclass(dealer, Dealer):
                raise TypeError(f"register_dealer wants a Dealer class or instance, got the class "
                                f"{dealer.__name__} (not a subclass of snorky_sync.services."
                                "datasync.dealers.Dealer)")
            instance = dealer()
        elif isinstance(dealer, Dealer):
            instance = dealer
        else:
            raise TypeError(f"register_dealer wants a Dealer class or instance, got "
                            f"{type(dealer).__name__}")
        name = instance.name
        model = getattr(instance, "model", None)
        checks.text(f"{instance!r}: a dealer's name", name, what="a non-empty string")
        checks.text(f"{instance!r}: a dealer's model", model, min_length=0)
        with self.lock:
            self.dm.register_dealer(instance)
        return instance

    def unregister_dealer(self, dealer: Dealer) -> None:
        """Stop ``dealer`` (an instance); subscriptions using it are cancelled."""
        with self.lock:
            if self.dealers_by_name.get(dealer.name) is not dealer:
                raise ValueError(f"{dealer!r} is not registered")
            for sub in list(self.subscriptions.values()):
                if any(item.dealer is dealer for item in sub.items):
                    self.do_cancel_subscription(sub)
            self.dm.unregister_dealer(dealer)

    # -- called by the backend -------------------------------------------------
    def do_authorize_subscription(self, items: Any, timeout_interval: float,
                                  timeout_factory: Any = None, requester: str | None = None) -> str:
        """Register a pending subscription for ``items``; returns its token.

        Raises RPCError with the protocol's texts.  A refused authorization
        registers nothing.  Unless acquired within ``timeout_interval``
        seconds the subscription expires.  ``requester`` (optional) names who
        the page belongs to (``user:42``, ``addr:203.0.113.7``): pending
        subscriptions are capped per requester (``max_pending_per_requester``)
        and the process-wide cap never locks out the others (``max_pending``).
        With a distributed broker the authorization is also announced to
        every other process, so the browser may acquire it on any of them
        (which takes it over from this one), and the token is returned once
        Redis confirmed this process's subscription to its models' topics.
        """
        if not isinstance(items, (list, tuple)):
            raise RPCError("items must be a list")
        if requester is not None and (not isinstance(requester, str)
                                      or len(requester) > MAX_REQUESTER_SIZE):
            raise RPCError("Invalid requester")
        with self.lock:
            pairs = self._parse_items(items)
            self._admit(requester)
            sub = self._register(None, pairs, timeout_interval, timeout_factory, requester)
            token, topics = token_of(sub), sub.topics
        if self._distributed:
            self._announce({"op": "auth", "token": token, "timeout": timeout_interval,
                            "items": [{"dealer": d, "query": q} for d, q in pairs],
                            "requester": requester})
            # Deltas the web app publishes once it has the token (through any
            # process) must reach this process: its models' topics are confirmed
            # first.  The announcement reaches Redis before the token reaches the
            # browser: an acquisition on another process finds it (its barrier).
            for topic in topics:
                if not self.cluster.confirm(topic, self.ANNOUNCE_WAIT):
                    counters["datasync_topics_unconfirmed"] += 1
            self.cluster.flush()
        return token

    def _admit(self, requester: str | None) -> None:
        """Make room for one more pending subscription of ``requester`` (under
        the lock): evict its own oldest at its cap; at the process-wide cap
        refuse it if it holds the most, else evict the oldest of whoever does."""
        sm = self.sm
        if requester is not None and sm.pending_of(requester) >= self.max_pending_per_requester:
            self._evict(requester, "requester_cap")
        if len(self.pending) < self.max_pending:
            return
        biggest, most = sm.biggest_requester()
        if sm.pending_of(requester) >= most:
            counters["datasync_authorizations_refused"] += 1
            _warn.warning("datasync-pending", "%s: %d subscriptions pending (%d of them for %s), "
                          "authorization refused", self.name, len(self.pending), most,
                          printable(requester))
            raise RPCError("Too many pending subscriptions")
        self._evict(biggest, "process_cap")

    def _evict(self, requester: str | None, why: str) -> None:
        oldest = self.sm.oldest_pending(requester)
        if oldest is None:
            return
        counters["datasync_pending_evicted"] += 1
        counters[f"datasync_pending_evicted_{why}"] += 1
        _warn.warning(f"datasync-evict-{why}", "%s: pending subscription of %s evicted (%s): "
                      "%d pending for it, %d in all", self.name, printable(requester), why,
                      self.sm.pending_of(requester), len(self.pending))
        self.do_cancel_subscription(oldest)

    def _parse_items(self, items: Any) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = []
        for raw in items:
            if not isinstance(raw, dict):
                raise RPCError("item must be an object")
            if "dealer" not in raw:
                raise RPCError("Missing field 'dealer'")
            dealer_name = raw["dealer"]
            if not isinstance(dealer_name, str):
                raise RPCError("dealer should be a dealer name")
            dealer = self.dealers_by_name.get(dealer_name)
            if dealer is None:
                raise RPCError("No such dealer")
            if "query" not in raw:
                raise RPCError("Missing field 'query'")
            query = raw["query"]
            try:
                dealer.validate_query(query)
            except BadQuery as exc:
                raise RPCError(str(exc) or "Invalid query") from None
            pairs.append((dealer_name, query))
        return pairs

    def _register(self, token: str | None, pairs: list[tuple[str, Any]], timeout_interval: float,
                  timeout_factory: Any = None, requester: str | None = None) -> Subscription:
        """Create the pending subscription (all items or none; a new token if
        ``token`` is None); caller holds the lock."""
        sub = Subscription([SubscriptionItem(d, q) for d, q in pairs], self, token=token,
                           requester=requester)
        try:
            self.dm.connect_subscription(sub)
        except BaseException as exc:
            sub.close()
            if isinstance(exc, BadQuery):
                raise RPCError(str(exc) or "Invalid query") from None
            raise
        self.sm.register_subscription(sub)
        self._want(sub)
        sub.timer = (timeout_factory or GeventTimeoutFactory).call_later(
            timeout_interval, self._expire, sub)
        return sub

    def do_publish_deltas(self, deltas: Any) -> None:
        """Validate every delta, then deliver them in order (RPCError if any is invalid).

        With a distributed broker the batch goes through it, one message per
        model (its deltas in order) on that model's topic, to the processes
        holding a subscription of the model, this one included (so every
        process applies each model's deltas in one order).
        """
        checked = validate_deltas(deltas)
        if self._distributed:
            by_model: dict[str, list[dict[Any, Any]]] = {}
            for delta in checked:
                by_model.setdefault(delta["model"], []).append(delta)
            for model, batch in by_model.items():
                self._publish_model(model, {"op": "deltas", "model": model, "deltas": batch})
            # Answer only once the batch is in Redis and has been delivered
            # here: an acquisition made right after the answer (on this
            # process, on the subscription's owner after its barrier, or
            # elsewhere by a take-over) then sees these deltas among its
            # buffered ones, never after its response.
            if not self.cluster.barrier(self.DELTAS_CONFIRM_WAIT):
                counters["datasync_deltas_unconfirmed"] += 1
                log.error("%s: %d deltas not confirmed by the broker within %ss",
                          self.name, len(checked), self.DELTAS_CONFIRM_WAIT)
                raise RPCError("Deltas not confirmed by the broker")
            return
        self._deliver_all(checked)

    def _publish_delta(self, delta: Any) -> None:
        """``dm.deliver_delta(delta)`` (Snorky 0.1's way to publish, as its
        backend did): as one ``publishDeltas`` of it."""
        self.do_publish_deltas([delta])

    def _deliver_all(self, checked: list[dict[Any, Any]]) -> None:
        with self.lock:
            for delta in checked:
                if delta["model"] in self.dealers_by_model:  # else it reaches nobody
                    self._deliver(delta)

    # -- many processes ---------------------------------------------------------
    _distributed = False
    ANNOUNCE_WAIT = 2.0
    """Seconds ``acquireSubscription`` of a token unknown here waits for the
    broker barrier (authorizations made on other processes before it arrive)."""
    DELTAS_CONFIRM_WAIT = 5.0
    """Seconds ``publishDeltas`` waits for its batch to come back from the
    broker before answering ``Deltas not confirmed by the broker``."""
    HANDOVER_WAIT = 5.0
    """Seconds a resumption of a subscription detached on another process
    waits for that process to hand it over (Redis broker) before answering
    ``{"recovered": false}``."""

    def use_broker(self, broker: Broker) -> None:
        super().use_broker(broker)
        if broker.distributed:
            self._distributed = True
            self._origin = broker.origin.hex()
            self._family = f"datasync:{self.name}:m"
            broker.subscribe(f"datasync:{self.name}", self._on_broker_message, echo=True)
            broker.route(self._family, self._on_model_message, echo=True)
            if self._resumable and callable(getattr(broker, "script", None)):  # a RedisBroker
                from ...brokers.redis import RedisBroker
                from ...brokers.redis_resume import RedisResumeStore
                from ...brokers.sharded import ShardedBroker
                if isinstance(broker, (RedisBroker, ShardedBroker)):
                    self._resume_store = RedisResumeStore(broker, self.name, self.resume_window)

    def _announce(self, event: dict[Any, Any]) -> None:
        event["from"] = self._origin
        self.cluster.publish(f"datasync:{self.name}", wire.encode(event))

    def _model_topic(self, model: str) -> str:
        return channel_topic(self._family, model.encode("utf-8", "surrogatepass"))

    def _publish_model(self, model: str, event: dict[Any, Any]) -> None:
        event["from"] = self._origin
        self.cluster.publish(self._model_topic(model), wire.encode(event))

    def _want(self, sub: Subscription) -> None:
        """Subscribe to the topics of ``sub``'s models (under the lock; the
        broker counts: the last subscription of a model leaving unsubscribes)."""
        if not self._distributed:
            return
        models = {item.dealer.model for item in sub.items if item.dealer is not None}
        sub.topics = tuple(self._model_topic(m) for m in sorted(models))
        for topic in sub.topics:
            self.cluster.want(topic)

    def _on_broker_message(self, data: bytes) -> None:
        event = wire.decode(data)
        op = event.get("op")
        mine = event.get("from") == self._origin
        if op == "auth" and not mine:
            self._remember(event)
        elif op == "acquired" and not mine:
            self._remote.pop(event["token"], None)
        elif op == "claim":  # of a subscription with no model (no marker to wait for)
            if event.get("owner") == self._origin:
                self._cut(event["token"], event["from"], None, event.get("kind"))
        elif op == "handed" and event.get("to") == self._origin:
            with self.lock:
                handover = self._handovers.get(event["token"])
                if handover is not None and not handover.answered:
                    handover.answered = True
                    handover.ok = bool(event.get("ok"))
                    handover.deltas = event.get("deltas") or []
                    handover.check()

    def _remember(self, event: dict[Any, Any]) -> None:
        """An authorization made on another process: who holds it."""
        remote = self._remote
        now = time.monotonic()
        while remote:  # forget those expired (oldest first) and beyond the cap
            first = next(iter(remote))
            if remote[first][3] > now and len(remote) < REMOTE_PENDING:
                break
            del remote[first]
        try:
            pairs = [(str(i["dealer"]), i["query"]) for i in event["items"]]
            remote[event["token"]] = (event["from"], pairs, event.get("requester"),
                                      now + float(event["timeout"]))
        except (KeyError, TypeError, ValueError):
            log.error("%s: a malformed authorization from another process", self.name)

    def _on_model_message(self, data: bytes) -> None:
        event = wire.decode(data)
        op = event.get("op")
        if op == "deltas":
            self._deliver_all([Delta.from_json(d) for d in event["deltas"]])
        elif op == "cut":
            token, model = event["token"], event["model"]
            if event.get("from") == self._origin:  # ours came back: the model's next deltas are ours
                with self.lock:
                    handover = self._handovers.get(token)
                    sub = handover.sub if handover is not None else None
                    if handover is not None and sub is not None and sub.gate is not None:
                        sub.gate.discard(model)
                        handover.check()
            elif event.get("owner") == self._origin:
                self._cut(token, event["from"], model, event.get("kind"))

    def _cut(self, token: str, claimer: str, model: str | None, kind: Any) -> None:
        """The marker of ``claimer`` taking over ``token`` (held here) on
        ``model``'s topic came (None: its claim of one with no model): the
        model's deltas from here on are the claimer's.  After the last, what
        this process kept of it is handed over and its copy here goes."""
        with self.lock:
            sub = self.subscriptions.get(token)
            held = PENDING if kind == "pending" else DETACHED
            if sub is None or sub.state is not held or sub.claimer not in (None, claimer):
                refused = True  # gone, acquired or resumed here, or another process took it first
            else:
                refused = False
                sub.claimer = claimer
                gate = sub.gate
                if gate is None:
                    gate = sub.gate = set()
                if model is not None:
                    gate.add(model)
                models = {item.dealer.model for item in sub.items if item.dealer is not None}
                if not gate >= models:
                    return
                if sub.state is PENDING:
                    deltas = sub.take_buffer()
                    counters["datasync_acquired_elsewhere"] += 1
                    self.do_cancel_subscription(sub)
                    self._announce({"op": "handed", "token": token, "to": claimer, "ok": True,
                                    "deltas": deltas})
                    return
        if refused:
            self._announce({"op": "handed", "token": token, "to": claimer, "ok": False})
        else:
            self._hand_over(token, claimer)

    def _deliver(self, delta: dict[Any, Any]) -> None:
        """Route ``delta`` through the dealers of its model, dispatching each
        pair as it comes, then send (under the lock).  A dealer that raises is
        logged and counted; what it routed before it raised is dispatched."""
        outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]] = {}
        overflowed: list[Subscription] = []
        model = delta["model"]
        for dealer in self.dm.get_dealers_for_model_class(model):
            try:
                self._dispatch(self.dm.route(dealer, delta), outgoing, overflowed, model)
            except Exception:
                counters["datasync_dealer_errors"] += 1
                log.exception("%s: dealer %r failed on a %s delta of %r",
                              self.name, dealer, delta["type"], delta["model"])
        self._flush(outgoing, overflowed)

    def _flush(self, outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]],
               overflowed: list[Subscription]) -> None:
        """After a dispatch: cancel the ``overflowed`` subscriptions (after the
        routing: no dealer's items change under it), then send ``outgoing``."""
        for sub in overflowed:
            self.buffer_overflowed(sub)
        for out, subs in outgoing.values():
            self._send(out, subs)

    def _dispatch(self, routed: Iterable[tuple[SubscriptionItem, dict[Any, Any]]],
                  outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]],
                  overflowed: list[Subscription], model: str | None = None) -> None:
        """What each routed pair becomes, by its item's subscription's state:
        PENDING buffers it (beyond max_buffered_deltas the subscription goes
        to ``overflowed``, to be cancelled), ACQUIRED sends it, DETACHED
        numbers and keeps it for a resumption (both through ``outgoing``: each
        distinct delta once, with its recipients, in the order first routed),
        CANCELLED drops it; RESUMING (being taken over from another process)
        buffers it as PENDING does.  While a subscription is handed between
        processes, the deltas of ``model`` (the one being routed) are dropped
        if its ``gate`` holds it (the other process takes them).  The pairs
        are not kept (no garbage per pair)."""
        find = outgoing.get
        pending, cancelled, resuming, limit = PENDING, CANCELLED, RESUMING, self.max_buffered_deltas
        for item, out in routed:
            sub = item.subscription
            if sub is None:  # a route_delta returning an item it was not given
                counters["datasync_dealer_errors"] += 1
                _warn.error("datasync-orphan-item", "%s: %r routed to %r, which belongs to no "
                            "subscription", self.name, item.dealer, item)
                continue
            gate = sub.gate
            if gate is not None and model in gate:
                continue
            state = sub.state
            if state is pending or state is resuming:
                buffer = sub.buffer
                buffer.append(out)
                if len(buffer) == limit + 1:
                    overflowed.append(sub)
            elif state is not cancelled:  # ACQUIRED, or DETACHED (kept, not sent)
                entry = find(id(out))
                if entry is None:
                    outgoing[id(out)] = (out, [sub])
                else:
                    entry[1].append(sub)

    def _send(self, delta: dict[Any, Any], subs: list[Subscription]) -> None:
        """Send ``delta`` to the clients of ``subs`` (one per routed item): as
        one frame, numbered when resumable (DETACHED ones only keep it), or
        through an overriding ``deliver_delta`` one client at a time."""
        if self._deliver_overridden:
            for sub in subs:
                if sub.client is None:
                    continue
                try:
                    self.deliver_delta(sub.client, delta)
                except Exception:  # counted as before, when it ran inside the dealer's call
                    counters["datasync_dealer_errors"] += 1
                    log.exception("%s: deliver_delta failed on a %s delta of %r",
                                  self.name, delta["type"], delta["model"])
            return
        msg: dict[str, Any] = {"type": "delta", "delta": delta}
        if self._resumable:
            self._seq += 1
            msg["seq"] = self._seq
            msg["epoch"] = self.epoch
            for sub in subs:
                sub.remember(self._seq, delta)
        clients = [client for sub in subs if (client := sub.client) is not None]  # DETACHED: none
        if len(clients) == 1:
            self.send_message_to(clients[0], msg)
        elif clients:
            self.broadcast(clients, msg)

    def dispatch_pushed(self, subscription: Subscription, delta: dict[Any, Any]) -> None:
        """A delta pushed into ``subscription`` outside a routing pass (0.1's
        ``Subscription.deliver_delta``, e.g. from a dealer's ``deliver_delta``
        called directly): dispatched now by its state, as a routed one."""
        with self.lock:
            outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]] = {}
            overflowed: list[Subscription] = []
            self._dispatch([(SubscriptionItem("", None, subscription), delta)], outgoing, overflowed)
            self._flush(outgoing, overflowed)

    def deliver_delta(self, client: Client, delta: dict[Any, Any]) -> None:
        """Send one delta to one client: ``{"type": "delta", "delta": delta}``."""
        self.send_message_to(client, {"type": "delta", "delta": delta})

    def buffer_overflowed(self, subscription: Subscription) -> None:
        """A pending subscription buffered more than max_buffered_deltas: cancel it
        (called by the dispatch, under the lock)."""
        counters["datasync_subscriptions_overflowed"] += 1
        log.warning("%s: pending subscription cancelled after buffering %d deltas "
                    "(never acquired); acquiring it will answer 'No such subscription'",
                    self.name, len(subscription.buffer))
        self.do_cancel_subscription(subscription)

    # -- expiry -----------------------------------------------------------------
    def _expire(self, sub: Subscription) -> None:
        with self.lock:
            if sub.token is None or self.subscriptions.get(sub.token) is not sub or sub.state is not PENDING:
                return
            sub.timer = None  # this greenlet; nothing to cancel
            dropped = len(sub.buffer)
            self.do_cancel_subscription(sub)
            counters["datasync_subscriptions_expired"] += 1
            log.info("%s: subscription expired unacquired (%d buffered deltas dropped)",
                     self.name, dropped)
        self.subscription_expired(sub)

    def subscription_expired(self, subscription: Subscription) -> None:
        """Hook: ``subscription`` expired without being acquired (already cancelled)."""

    # -- cancellation -------------------------------------------------------------
    def do_cancel_subscription(self, subscription: Subscription) -> None:
        """Forget ``subscription`` everywhere (cancel, expiry, disconnect).  Idempotent."""
        token = subscription.token
        with self.lock:
            if token is None or self.subscriptions.get(token) is not subscription:
                return
            if subscription.state is ACQUIRED:
                self.sm.unlink_subscription_from_client(subscription)
            topics, subscription.topics = subscription.topics, ()
            for topic in topics:
                self.cluster.unwant(topic)
            self.sm.unregister_subscription(subscription)
            self.dm.disconnect_subscription(subscription)
            subscription.close()

    # -- RPC commands -------------------------------------------------------------
    @rpc_command(lock=False)
    def acquireSubscription(self, req: Request, token: Any, since: Any = None,
                            epoch: Any = None) -> dict[str, Any] | None:
        """Link the subscription to the caller; buffered deltas arrive before the reply.

        With ``since`` (the ``seq`` of the last delta the page got; needs
        ``resume_window``) and ``epoch`` (that delta's): resume a subscription
        whose connection dropped — the deltas sent after ``since`` arrive
        first, then ``{"recovered": true, "epoch": ...}``; ``{"recovered":
        false, "epoch": ...}`` when they are no longer all kept (the
        subscription is cancelled) or when ``epoch`` is not this process's
        (the server restarted, or the page came back on another process): the
        page fetches its data and a new token, and the deltas of the answer's
        epoch start a new ``seq``.

        With a Redis broker a subscription detached on another process is
        resumed here: it is claimed in Redis (bound to the identity that
        held it; once) and taken over (:meth:`_take_over`: each model's
        deltas up to this process's marker on its topic are that process's,
        the later ones this one's), the deltas it missed arrive renumbered
        in this process's epoch, then those routed here since the markers,
        then the answer.  ``Resume state unavailable`` when Redis cannot be
        reached; ``{"recovered": false}`` when the other process does not
        hand it over within ``HANDOVER_WAIT`` seconds (it stopped).  A token
        still pending on another process (authorized there) is taken over
        the same way: its buffered deltas, then ours, then the answer;
        ``No such subscription`` if it is not handed over."""
        if not isinstance(token, str):
            raise RPCError("token must be string")
        if since is not None or epoch is not None:
            if not self._resumable:
                raise RPCError("Resumption not enabled")
            if type(since) is not int or since < 0:
                raise RPCError("Invalid params")
            if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_SIZE):
                raise RPCError("Invalid params")
        if self._distributed and (token not in self.subscriptions or token in self.pending):
            # (without the lock) authorized on another process? Its announcement
            # reached Redis before the token reached the browser: the barrier
            # brings it here.  Pending here: deltas whose publishDeltas was
            # answered before are in its buffer once the barrier passed.
            self.cluster.barrier(self.ANNOUNCE_WAIT)
        if since is not None and self._resume_store is not None:
            here = self.subscriptions.get(token)
            if here is None or (epoch is not None and epoch != self.epoch):
                # detached on another process? (Redis broker) It is handed over
                answer = self._resume_elsewhere(req.client, token, since, epoch)
                if answer is not None:
                    return answer  # else: as for a token unknown here
        handover = None
        if (self._distributed and epoch is None and token not in self.subscriptions
                and token in self._remote):
            # pending on another process: taken over from it (see the module)
            owner, items, requester, _ = self._remote[token]
            handover = self._take_over(token, owner, items, requester, None, "pending")
        with self.lock:
            if handover is not None:
                self._taken_over(handover, req.client)
            sub = self.subscriptions.get(token)
            if epoch is not None and epoch != self.epoch:
                return self._other_epoch(sub)
            if since is not None and sub is not None and sub.state is DETACHED:
                return self._resume(req.client, sub, since)
            try:
                self._acquire(req, token)
            except RPCError:
                if handover is not None and handover.sub is not None:
                    self.do_cancel_subscription(handover.sub)
                raise
            return {"recovered": True, "epoch": self.epoch} if since is not None else None

    def _taken_over(self, handover: _Handover, client: Client) -> None:
        """A pending subscription taken over from another process (under the
        lock): pending here, the owner's buffered deltas before ours; or
        ``No such subscription`` (not handed over, or the page left)."""
        sub = handover.sub
        if sub is not None and sub.token is None:  # cancelled meanwhile (its buffer overflowed)
            sub = None
        ok = handover.done.is_set() and handover.ok
        if sub is None or not ok or sub.state is not RESUMING or client.closed:
            if not ok:
                counters["datasync_handovers_failed"] += 1
                log.info("%s: a subscription authorized on another process was not handed over "
                         "(%s)", self.name, "not answered" if not handover.answered
                         else "gone, or taken by another process")
            if sub is not None:
                self.do_cancel_subscription(sub)
            raise RPCError("No such subscription")
        self._remote.pop(token_of(sub), None)
        sub.buffer[:0] = handover.deltas  # (each model's deltas in order: the owner's were first)
        sub.state = PENDING
        counters["datasync_taken_over"] += 1

    def _other_epoch(self, sub: Subscription | None) -> dict[Any, Any]:
        """A resumption from another epoch (another process's deltas, or this
        server before a restart): the page's position means nothing here.  The
        same answer whether the token is known or not; a pending subscription
        of it here is dropped."""
        counters["datasync_resumptions_other_epoch"] += 1
        log.debug("%s: a resumption from another epoch (a restart, or another process): "
                  "not recovered", self.name)
        if sub is not None and sub.state is PENDING:
            self.do_cancel_subscription(sub)
        return {"recovered": False, "epoch": self.epoch}

    def _resume(self, client: Client, sub: Subscription, since: int) -> dict[Any, Any]:
        if retained.compact_key(wire.json_key(client.identity)) != sub.identity:
            # another identity (anonymous included): as for an unknown token
            counters["datasync_resumptions_refused_identity"] += 1
            raise RPCError("No such subscription")
        if sub.gate is not None:  # being taken over by another process: as claimed already
            counters["datasync_resumptions_refused_elsewhere"] += 1
            raise RPCError("No such subscription")
        self._drop_shared(token_of(sub))  # resumed (or not) here: nobody else takes it
        if since < sub.evicted:
            counters["datasync_resumptions_failed"] += 1
            log.info("%s: a resumption came too late (deltas since %d are gone): cancelled",
                     self.name, since)
            self.do_cancel_subscription(sub)
            return {"recovered": False, "epoch": self.epoch}
        mine = self.subscriptions_by_client.get(client)
        if mine is not None and len(mine) >= self.max_subscriptions:
            raise RPCError("Too many subscriptions")
        sub.resume(client)
        self.subscriptions_by_client.setdefault(client, {})[token_of(sub)] = sub
        missed = sub.recent.since(sub, since) if sub.recent is not None else ()
        sub.recent = self._log_of(client)
        for seq, delta in missed:
            self.send_message_to(client, {"type": "delta", "delta": delta, "seq": seq,
                                          "epoch": self.epoch})
        counters["datasync_resumptions"] += 1
        return {"recovered": True, "epoch": self.epoch}

    # -- resumption on another process (Redis broker) --------------------------------
    def _resume_elsewhere(self, client: Client, token: str, since: int,
                          epoch: str | None) -> dict[str, Any] | None:
        """Take over the subscription of ``token`` detached on another process
        and resume it for ``client`` (without the lock): claim it in Redis,
        announce the claim, wait for the owner's hand-over, send what it
        missed.  None: nothing to take over here (no such state, another
        identity, claimed already): answered as for an unknown token."""
        store = self._resume_store
        assert store is not None
        identity = retained.compact_key(wire.json_key(client.identity))
        try:
            found = store.claim(token, identity, self._origin)
        except BrokerUnavailable as exc:
            raise self._store_error("claim", exc) from None
        if found is True:  # another identity, or claimed already: as for an unknown token
            counters["datasync_resumptions_refused_elsewhere"] += 1
            return None
        if found is False or token in self._handovers:
            return None
        if epoch is not None and epoch != found.epoch:
            counters["datasync_resumptions_other_epoch"] += 1  # the owner lets it expire
            return {"recovered": False, "epoch": self.epoch}
        handover = self._take_over(token, found.owner, found.items, found.requester, identity, "resume")
        arrived = handover.done.is_set()
        sub = handover.sub
        if not (arrived and handover.ok and sub is not None):
            return self._handover_failed(token, sub, "no hand-over from the process that kept it"
                                         if not arrived else "not handed over")
        try:
            taken = store.take(token)
        except BrokerUnavailable as exc:
            with self.lock:
                self.do_cancel_subscription(sub)
            raise self._store_error("take", exc) from None
        if taken is None:
            return self._handover_failed(token, sub, "its state left Redis")
        evicted, entries = taken
        with self.lock:
            if sub.state is not RESUMING or client.closed:  # overflowed meanwhile; the page left
                return self._handover_failed(token, sub, "cancelled meanwhile")
            if since < evicted:
                counters["datasync_resumptions_failed"] += 1
                self.do_cancel_subscription(sub)
                return {"recovered": False, "epoch": self.epoch}
            mine = self.subscriptions_by_client.get(client)
            if mine is not None and len(mine) >= self.max_subscriptions:
                self.do_cancel_subscription(sub)
                raise RPCError("Too many subscriptions")
            sub.resume(client)
            self.subscriptions_by_client.setdefault(client, {})[token] = sub
            sub.recent = self._log_of(client)
            for seq, delta in entries:  # renumbered in this process's epoch
                if seq > since:
                    self._send(delta, [sub])
            for delta in sub.take_buffer():  # routed here since the claim
                self._send(delta, [sub])
            counters["datasync_resumptions_elsewhere"] += 1
            return {"recovered": True, "epoch": self.epoch}

    def _store_error(self, what: str, exc: Exception) -> RPCError:
        counters["datasync_resume_store_errors"] += 1
        _warn.error("datasync-resume-store", "%s: Redis unreachable (%s of a resumption: %s): "
                    "answered 'Resume state unavailable'", self.name, what, exc)
        return RPCError("Resume state unavailable")

    def _handover_failed(self, token: str, sub: Subscription | None, why: str) -> dict[str, Any]:
        counters["datasync_handovers_failed"] += 1
        log.info("%s: a resumption of a subscription detached on another process failed (%s): "
                 "not recovered", self.name, why)
        if sub is not None:
            with self.lock:
                self.do_cancel_subscription(sub)
        self._drop_shared(token)
        return {"recovered": False, "epoch": self.epoch}

    def _take_over(self, token: str, owner: str, items: list[tuple[str, Any]], requester: Any,
                   identity: Any, kind: str) -> _Handover:
        """Take over ``token``'s subscription from ``owner`` (without the lock):
        register it here (RESUMING: it buffers), subscribe to its models'
        topics and wait for Redis to confirm them, then publish a marker on
        each (``kind``: ``pending`` or ``resume``, what the owner must hold).
        Each model's deltas before its marker are the owner's, those after
        ours: the owner hands over what it kept once it saw every marker, and
        the hand-over is done once ours came back too (each delta once, each
        model's in order).  Returns the hand-over: ``done`` (within
        HANDOVER_WAIT), ``ok``, ``sub`` (a subscription with no model: a
        ``claim`` on the service's topic instead of markers)."""
        handover = _Handover(items, requester, identity)
        if token in self._handovers or owner == self._origin:
            return handover  # (being taken over here already; ours, gone: not done)
        self._handovers[token] = handover
        try:
            with self.lock:
                if token in self.subscriptions:
                    return handover
                sub = Subscription([SubscriptionItem(d, q) for d, q in items], self,
                                   token=token, requester=requester)
                try:
                    self.dm.connect_subscription(sub)
                except Exception:
                    log.exception("%s: cannot take over a subscription from another process", self.name)
                    sub.close()
                    return handover
                sub.state = RESUMING
                sub.identity = identity
                self.sm.adopt(sub)
                self._want(sub)
                models = sorted({item.dealer.model for item in sub.items if item.dealer is not None})
                sub.gate = set(models)
                handover.sub = sub
                topics = sub.topics
            if not all(self.cluster.confirm(topic, self.HANDOVER_WAIT) for topic in topics):
                counters["datasync_topics_unconfirmed"] += 1
                return handover
            for model in models:
                self._publish_model(model, {"op": "cut", "kind": kind, "token": token,
                                            "model": model, "owner": owner})
            if not models:
                self._announce({"op": "claim", "kind": kind, "token": token, "owner": owner})
            self._await_owner(handover, owner, kind)
            return handover
        finally:
            self._handovers.pop(token, None)
            with self.lock:
                if handover.sub is not None and handover.done.is_set() and handover.ok:
                    handover.sub.gate = None

    def _await_owner(self, handover: _Handover, owner: str, kind: str) -> None:
        """Wait (HANDOVER_WAIT) for the hand-over.  A pending subscription
        whose owner stopped (its liveness key in Redis expired: it will never
        answer) is refused at once (``No such subscription``, logged and
        counted): the deltas the owner had buffered for it went with it, and
        a page that acquired it anyway would show stale data without knowing.
        The page asks its web app for a new token, as it does when a lone
        server restarted."""
        deadline = time.monotonic() + max(self.HANDOVER_WAIT, self.cluster.peer_expiry + 1)
        while not handover.done.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            if kind != "pending" or handover.answered or self._alive(owner):
                continue
            counters["datasync_owner_gone"] += 1
            _warn.warning("datasync-owner-gone", "%s: a token authorized on a process that stopped "
                          "is refused (No such subscription): the deltas buffered for it went with "
                          "that process; the page needs a new token", self.name)
            with self.lock:
                handover.answered = True
                handover.ok = False
                handover.check()
            return

    def _alive(self, origin: str) -> bool:
        """Whether ``origin``'s liveness key is in Redis (True when it cannot be told)."""
        from ...brokers.redis import PROC
        broker: Any = self.cluster
        try:
            place = PROC + origin
            key = place + broker.liveness_suffix_for(place)
            return bool(broker.client_for(place).exists(key))
        except Exception:  # (no Redis to ask, unreachable: as alive, nothing is taken)
            return True

    def _hand_over(self, token: str, to: str) -> None:
        """Another process claimed ``token``, detached here (the dispatcher):
        stop keeping it at this point of the deltas' order and hand what it
        kept over through Redis."""
        with self.lock:
            sub = self.subscriptions.get(token)
            if sub is None or sub.state is not DETACHED:  # resumed here meanwhile, expired
                entries: list[tuple[int, dict[Any, Any]]] | None = None
                evicted = 0
            else:
                entries = sub.recent.since(sub, 0) if sub.recent is not None else []
                evicted = sub.evicted
                self.do_cancel_subscription(sub)
                counters["datasync_handed_over"] += 1
        if entries is None:
            self._announce({"op": "handed", "token": token, "to": to, "ok": False})
        else:
            gevent.spawn(self._write_hand_over, token, to, entries, evicted)

    def _write_hand_over(self, token: str, to: str, entries: list[tuple[int, dict[Any, Any]]],
                         evicted: int) -> None:
        store = self._resume_store
        assert store is not None
        try:
            store.hand(token, entries, evicted, 2 * self.HANDOVER_WAIT)
            ok = True
        except BrokerUnavailable as exc:
            counters["datasync_resume_store_errors"] += 1
            _warn.error("datasync-resume-store", "%s: Redis unreachable (hand-over of a "
                        "subscription: %s): not recovered", self.name, exc)
            ok = False
        self._announce({"op": "handed", "token": token, "to": to, "ok": ok})

    def _share(self, token: str, identity: Any, items: list[tuple[str, Any]], requester: Any) -> None:
        """Write a detached subscription's state to Redis (a greenlet of its own)."""
        store = self._resume_store
        assert store is not None
        try:
            store.put(token, self._origin, self.epoch, identity, items, requester)
            counters["datasync_resume_states_shared"] += 1
        except BrokerUnavailable as exc:
            counters["datasync_resume_store_errors"] += 1
            _warn.error("datasync-resume-store", "%s: Redis unreachable (%s): a detached "
                        "subscription resumes on this process only", self.name, exc)

    def _drop_shared(self, token: str) -> None:
        if self._resume_store is not None:
            gevent.spawn(self._drop_quietly, token)

    def _drop_quietly(self, token: str) -> None:
        store = self._resume_store
        assert store is not None
        try:
            store.drop(token)
        except BrokerUnavailable:
            pass  # it expires with the window

    def _detach(self, sub: Subscription) -> None:
        """The connection of a resumable subscription dropped: keep it for the
        window (and, with a Redis broker, share it: any process may resume it)."""
        self.sm.unlink_subscription_from_client(sub)
        sub.detach()
        factory = self.resume_timeout_factory or GeventTimeoutFactory
        sub.timer = factory.call_later(self.resume_window, self._expire_detached, sub)
        if self._resume_store is not None:
            gevent.spawn(self._share, token_of(sub), sub.identity,
                         [(item.dealer_name, item.query) for item in sub.items], sub.requester)

    def _expire_detached(self, sub: Subscription) -> None:
        with self.lock:
            if sub.token is None or self.subscriptions.get(sub.token) is not sub or sub.state is not DETACHED:
                return
            sub.timer = None
            self._drop_shared(sub.token)
            self.do_cancel_subscription(sub)
            counters["datasync_resume_windows_expired"] += 1

    def _log_of(self, client: Client) -> ResumeLog:
        log_ = self._logs.get(client)
        if log_ is None:
            log_ = self._logs[client] = ResumeLog(self.resume_buffer)
        return log_

    def _acquire(self, req: Request, token: str) -> None:
        sub = self.subscriptions.get(token)
        if sub is None:
            raise RPCError("No such subscription")
        client = req.client
        identity = retained.compact_key(wire.json_key(client.identity))
        if sub.state is DETACHED and sub.identity != identity:
            raise RPCError("No such subscription")  # not even whether it exists
        if sub.state is not PENDING or sub.gate is not None:  # (or being taken by another process)
            raise RPCError("Subscription already acquired")
        mine = self.subscriptions_by_client.get(client)
        if mine is not None and len(mine) >= self.max_subscriptions:
            raise RPCError("Too many subscriptions")
        sub.identity = identity
        if self._resumable:
            sub.recent = self._log_of(client)
        for delta in self.sm.link(sub, client):
            self._send(delta, [sub])  # in order, before the response
        if self._distributed:  # other processes forget who held it (queued, no I/O here)
            self._announce({"op": "acquired", "token": token})

    @rpc_command
    def cancelSubscription(self, req: Request, token: Any) -> None:
        """Cancel a subscription the caller acquired."""
        if not isinstance(token, str):
            raise RPCError("token must be string")
        sub = self.subscriptions.get(token)
        if sub is None or sub.client is not req.client:
            raise RPCError("No such subscription")
        self.do_cancel_subscription(sub)

    def client_disconnected(self, client: Client) -> None:
        with self.lock:
            mine = self.subscriptions_by_client.get(client)
            for sub in list(mine.values()) if mine else ():
                if self._resumable and sub.recent is not None:
                    self._detach(sub)  # it keeps the connection's log for the window
                else:
                    self.do_cancel_subscription(sub)
            self._logs.pop(client, None)

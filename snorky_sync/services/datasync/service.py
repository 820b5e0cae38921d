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
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from ... import checks, wire
from ...brokers.base import BrokerUnavailable
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


class _Handover:
    """A resumption taking over a subscription detached on another process."""

    __slots__ = ("items", "requester", "identity", "done", "ok", "sub")

    def __init__(self, items: list[tuple[str, Any]], requester: Any, identity: Any) -> None:
        self.items = items
        self.requester = requester
        self.identity = identity
        self.done = gevent.event.Event()  # the owner answered
        self.ok = False                   # ... with the hand-over
        self.sub: Subscription | None = None  # registered here when our claim came back


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
        self._handovers: dict[str, _Handover] = {}  # token -> a resumption taking it over, here
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
        every other process, so the browser may acquire it on any of them.
        """
        if not isinstance(items, (list, tuple)):
            raise RPCError("items must be a list")
        if requester is not None and (not isinstance(requester, str)
                                      or len(requester) > MAX_REQUESTER_SIZE):
            raise RPCError("Invalid requester")
        with self.lock:
            pairs = self._parse_items(items)
            self._admit(requester)
            token = token_of(self._register(None, pairs, timeout_interval, timeout_factory, requester))
        if self._distributed:
            self._announce({"op": "auth", "token": token, "timeout": timeout_interval,
                            "items": [{"dealer": d, "query": q} for d, q in pairs],
                            "requester": requester})
            # The token must reach Redis before the web app has it: deltas it
            # publishes next (through any process) are then ordered after it.
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
        sub.timer = (timeout_factory or GeventTimeoutFactory).call_later(
            timeout_interval, self._expire, sub)
        return sub

    def do_publish_deltas(self, deltas: Any) -> None:
        """Validate every delta, then deliver them in order (RPCError if any is invalid).

        With a distributed broker the batch goes through it to every process,
        this one included, so all processes apply authorizations and deltas
        in the same order.
        """
        checked = validate_deltas(deltas)
        if self._distributed:
            self._announce({"op": "deltas", "deltas": checked})
            # Answer only once the batch has come back from the broker and
            # been delivered here: an acquisition made right after the
            # answer (on this process or another) then sees these deltas
            # among its buffered ones, never after its response.
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
            broker.subscribe(f"datasync:{self.name}", self._on_broker_message, echo=True)
            if self._resumable and callable(getattr(broker, "script", None)):  # a RedisBroker
                from ...brokers.redis import RedisBroker
                from ...brokers.redis_resume import RedisResumeStore
                from ...brokers.sharded import ShardedBroker
                if isinstance(broker, (RedisBroker, ShardedBroker)):
                    self._resume_store = RedisResumeStore(broker, self.name, self.resume_window)

    def _announce(self, event: dict[Any, Any]) -> None:
        event["from"] = self._origin
        self.cluster.publish(f"datasync:{self.name}", wire.encode(event))

    def _on_broker_message(self, data: bytes) -> None:
        event = wire.decode(data)
        op = event.get("op")
        mine = event.get("from") == self._origin
        if op == "deltas":
            self._deliver_all([Delta.from_json(d) for d in event["deltas"]])
        elif op == "auth" and not mine:
            with self.lock:
                if event["token"] in self.subscriptions:
                    return
                pairs = [(i["dealer"], i["query"]) for i in event["items"]]
                if not all(d in self.dealers_by_name for d, _ in pairs):
                    log.error("%s: authorization from another process names dealers this "
                              "process lacks (%s): it cannot be acquired here", self.name,
                              sorted({d for d, _ in pairs} - set(self.dealers_by_name)))
                    return
                requester = event.get("requester")
                try:
                    self._admit(requester)
                except RPCError:
                    return  # (counted and logged) acquirable on the process that authorized it
                try:
                    self._register(event["token"], pairs, event["timeout"], requester=requester)
                except Exception:
                    log.exception("%s: cannot register an authorization from another process", self.name)
        elif op == "acquired" and not mine:
            with self.lock:  # acquired elsewhere: our pending copy goes
                sub = self.pending.get(event["token"])
                if sub is not None:
                    counters["datasync_acquired_elsewhere"] += 1
                    self.do_cancel_subscription(sub)
        elif op == "claim":
            if event.get("owner") == self._origin:
                self._hand_over(event["token"], event["from"])
            if mine:
                self._adopt(event["token"])
        elif op == "handed" and event.get("to") == self._origin:
            handover = self._handovers.get(event["token"])
            if handover is not None:
                handover.ok = bool(event.get("ok"))
                handover.done.set()

    def _deliver(self, delta: dict[Any, Any]) -> None:
        """Route ``delta`` through the dealers of its model, dispatching each
        pair as it comes, then send (under the lock).  A dealer that raises is
        logged and counted; what it routed before it raised is dispatched."""
        outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]] = {}
        overflowed: list[Subscription] = []
        for dealer in self.dm.get_dealers_for_model_class(delta["model"]):
            try:
                self._dispatch(self.dm.route(dealer, delta), outgoing, overflowed)
            except Exception:
                counters["datasync_dealer_errors"] += 1
                log.exception("%s: dealer %r failed on a %s delta of %r",
                              self.name, dealer, delta["type"], delta["model"])
        for sub in overflowed:  # after the routing: no dealer's items change under it
            self.buffer_overflowed(sub)
        for out, subs in outgoing.values():
            self._send(out, subs)

    def _dispatch(self, routed: Iterable[tuple[SubscriptionItem, dict[Any, Any]]],
                  outgoing: dict[int, tuple[dict[Any, Any], list[Subscription]]],
                  overflowed: list[Subscription]) -> None:
        """What each routed pair becomes, by its item's subscription's state:
        PENDING buffers it (beyond max_buffered_deltas the subscription goes
        to ``overflowed``, to be cancelled), ACQUIRED sends it, DETACHED
        numbers and keeps it for a resumption (both through ``outgoing``: each
        distinct delta once, with its recipients, in the order first routed),
        CANCELLED drops it; RESUMING (being taken over from another process)
        buffers it as PENDING does.  The pairs are not kept (no garbage per pair)."""
        find = outgoing.get
        pending, cancelled, resuming, limit = PENDING, CANCELLED, RESUMING, self.max_buffered_deltas
        for item, out in routed:
            sub = item.subscription
            if sub is None:  # a route_delta returning an item it was not given
                counters["datasync_dealer_errors"] += 1
                _warn.error("datasync-orphan-item", "%s: %r routed to %r, which belongs to no "
                            "subscription", self.name, item.dealer, item)
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
            for sub in overflowed:
                self.buffer_overflowed(sub)
            for out, subs in outgoing.values():
                self._send(out, subs)

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
        held it; once), that process hands it over at the claim's place in
        the order every process applies deltas in (it stops keeping it
        there), the deltas it missed arrive renumbered in this process's
        epoch, then those routed here since the claim, then the answer.
        ``Resume state unavailable`` when Redis cannot be reached;
        ``{"recovered": false}`` when the other process does not hand it
        over within ``HANDOVER_WAIT`` seconds (it stopped)."""
        if not isinstance(token, str):
            raise RPCError("token must be string")
        if since is not None or epoch is not None:
            if not self._resumable:
                raise RPCError("Resumption not enabled")
            if type(since) is not int or since < 0:
                raise RPCError("Invalid params")
            if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_SIZE):
                raise RPCError("Invalid params")
        if self._distributed and token not in self.subscriptions:
            # authorized on another process? Its announcement reached Redis
            # before the token reached the browser: the barrier brings it here
            self.cluster.barrier(self.ANNOUNCE_WAIT)  # (without the lock)
        if since is not None and self._resume_store is not None:
            here = self.subscriptions.get(token)
            if here is None or (epoch is not None and epoch != self.epoch):
                # detached on another process? (Redis broker) It is handed over
                answer = self._resume_elsewhere(req.client, token, since, epoch)
                if answer is not None:
                    return answer  # else: as for a token unknown here
        with self.lock:
            sub = self.subscriptions.get(token)
            if epoch is not None and epoch != self.epoch:
                return self._other_epoch(sub)
            if since is not None and sub is not None and sub.state is DETACHED:
                return self._resume(req.client, sub, since)
            self._acquire(req, token)
            return {"recovered": True, "epoch": self.epoch} if since is not None else None

    def _other_epoch(self, sub: Subscription | None) -> dict[Any, Any]:
        """A resumption from another epoch (another process's deltas, or this
        server before a restart): the page's position means nothing here.  The
        same answer whether the token is known or not; a pending copy of it
        (authorized on another process, acquired there) is dropped."""
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
        handover = self._handovers[token] = _Handover(found.items, found.requester, identity)
        try:
            self._announce({"op": "claim", "token": token, "owner": found.owner})
            arrived = handover.done.wait(self.HANDOVER_WAIT)
        finally:
            self._handovers.pop(token, None)
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

    def _adopt(self, token: str) -> None:
        """Our claim of ``token`` came back through the broker (the
        dispatcher): from here on deltas routed to it are buffered here."""
        handover = self._handovers.get(token)
        if handover is None:
            return  # (given up already)
        with self.lock:
            old = self.subscriptions.get(token)
            if old is not None:
                if old.state is not PENDING:
                    return
                self.do_cancel_subscription(old)  # a pending copy, acquired since on another process
            sub = Subscription([SubscriptionItem(d, q) for d, q in handover.items], self,
                               token=token, requester=handover.requester)
            try:
                self.dm.connect_subscription(sub)
            except Exception:
                log.exception("%s: cannot take over a subscription from another process", self.name)
                sub.close()
                return
            sub.state = RESUMING
            sub.identity = handover.identity
            self.sm.adopt(sub)
            handover.sub = sub

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
        if sub.state is not PENDING:
            raise RPCError("Subscription already acquired")
        mine = self.subscriptions_by_client.get(client)
        if mine is not None and len(mine) >= self.max_subscriptions:
            raise RPCError("Too many subscriptions")
        sub.identity = identity
        if self._resumable:
            sub.recent = self._log_of(client)
        for delta in self.sm.link(sub, client):
            self._send(delta, [sub])  # in order, before the response
        if self._distributed:  # other processes drop their pending copy (queued, no I/O here)
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

"""DataSyncService: the frontend of DataSync (PROTOCOL.md §3).

Browsers call ``acquireSubscription(token)`` with a token the web application
got from :class:`~snorky_sync.services.datasync.backend.DataSyncBackend`, and
``cancelSubscription(token)``.  Deltas published through the backend are
routed by the dealers and delivered as ``{"type": "delta", "delta": ...}``.

The service owns all DataSync state; the backend only calls
:meth:`DataSyncService.do_authorize_subscription` and
:meth:`DataSyncService.do_publish_deltas`, which take ``self.lock``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ... import wire
from ...logs import RateLimitedLogger, printable
from ...metrics import counters
from ...timeout import GeventTimeoutFactory
from .. import retained
from ..base import RPCError, RPCService, rpc_command
from ..history import new_epoch
from .dealers import BadQuery, Dealer
from .deltas import Delta, validate_deltas
from .managers import DealerManager, SubscriptionManager
from .subscriptions import ResumeLog, Subscription, SubscriptionItem

__all__ = ["DataSyncService"]

log = logging.getLogger("snorky_sync.services.datasync")
_warn = RateLimitedLogger(log)

MAX_REQUESTER_SIZE = 256
"""Characters of a ``requester`` name (``Invalid requester`` beyond)."""

MAX_EPOCH_SIZE = 64
"""Characters of the ``epoch`` a resumption names (``Invalid params`` beyond;
the server's own are 16)."""


class DataSyncService(RPCService):
    """Frontend DataSync: ``acquireSubscription``, ``cancelSubscription``.

    ``dealers`` are dealer classes (instantiated here, as in Snorky 0.1) or
    instances.
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    MAX_PENDING = 10000
    """Authorized subscriptions not yet acquired, in this process.  At the
    cap, an authorization for a requester that holds the most of them is
    refused (``Too many pending subscriptions``); one for anybody else
    evicts the oldest pending subscription of the requester holding the
    most, so one requester's flood never locks the others out."""

    MAX_PENDING_PER_REQUESTER = 100
    """Pending subscriptions of one named requester (``authorizeSubscription``'s
    ``requester``: the page's user or client address); beyond it that
    requester's oldest pending subscription is evicted (acquiring it then
    answers ``No such subscription``).  Authorizations naming no requester
    (Snorky 0.1's backends) are bounded by ``MAX_PENDING`` only."""

    MAX_BUFFERED_DELTAS = 10000
    """Deltas buffered for one pending subscription.  Beyond this the
    subscription is cancelled (logged and counted) rather than growing
    without bound: acquiring it then answers ``No such subscription``, as
    for an expired one, and the page reloads its data."""

    MAX_SUBSCRIPTIONS_PER_CLIENT = 1000
    """Acquired subscriptions per connection (``Too many subscriptions``)."""

    def __init__(self, name: str, dealers: Iterable[type[Dealer] | Dealer] = (),
                 resume_window: float = 0.0, resume_buffer: int = 1000) -> None:
        """``resume_window`` (seconds, 0: off, 0.1's frames): a subscription whose
        connection drops waits that long for the page to come back and
        resume it (``acquireSubscription({token, since, epoch})``), keeping the
        last ``resume_buffer`` deltas it was sent; deltas then carry ``seq``
        and ``epoch``."""
        super().__init__(name)
        if not isinstance(resume_window, (int, float)) or resume_window < 0:
            raise TypeError(f"DataSyncService(resume_window=...) is seconds >= 0, got {resume_window!r}")
        if not isinstance(resume_buffer, int) or resume_buffer < 1:
            raise TypeError(f"DataSyncService(resume_buffer=...) is a count >= 1, got {resume_buffer!r}")
        self.resume_window = float(resume_window)
        self.resume_timeout_factory = None  # timers of the resume window (snorky_sync.timeout)
        self.resume_buffer = resume_buffer
        self._seq = 0
        self.epoch = new_epoch()
        """Names this service's sequence of ``seq`` (a new one per process: a
        restarted server numbers its deltas from 1 again).  Sent beside ``seq``."""
        self.dm = DealerManager()
        """The dealers (Snorky 0.1's dealer manager)."""
        self.sm = SubscriptionManager()
        """The subscriptions (Snorky 0.1's subscription manager)."""
        self.dealers_by_name = self.dm.dealers_by_name
        self.dealers_by_model = self.dm.dealers_by_model
        self.subscriptions = self.sm.subscriptions_by_token     # token -> every live subscription
        self.pending = self.sm.pending                          # token -> not yet acquired
        self.subscriptions_by_client = self.sm.subscriptions_by_client
        self._logs: dict[Any, ResumeLog] = {}  # client -> its resumable subscriptions' log
        self._outbox: dict[int, tuple[dict, list, list]] | None = None
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
        if not isinstance(name, str) or not name:
            raise TypeError(f"{instance!r}: a dealer's name is a non-empty string")
        if not isinstance(model, str):
            raise TypeError(f"{instance!r}: a dealer's model is a string")
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
                                  timeout_factory=None, requester: str | None = None) -> str:
        """Register a pending subscription for ``items``; returns its token.

        Raises RPCError with the protocol's texts.  A refused authorization
        registers nothing.  Unless acquired within ``timeout_interval``
        seconds the subscription expires.  ``requester`` (optional) names who
        the page belongs to (``user:42``, ``addr:203.0.113.7``): pending
        subscriptions are capped per requester (``MAX_PENDING_PER_REQUESTER``)
        and the process-wide cap never locks out the others (``MAX_PENDING``).
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
            token = self._register(None, pairs, timeout_interval, timeout_factory, requester).token
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
        if requester is not None and sm.pending_of(requester) >= self.MAX_PENDING_PER_REQUESTER:
            self._evict(requester, "requester_cap")
        if len(self.pending) < self.MAX_PENDING:
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

    def _parse_items(self, items) -> list[tuple[str, Any]]:
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
                  timeout_factory=None, requester: str | None = None) -> Subscription:
        """Create the pending subscription (all items or none; a new token if
        ``token`` is None); caller holds the lock."""
        sub = Subscription([SubscriptionItem(d, q) for d, q in pairs], self, token, requester)
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

    def _deliver_all(self, checked: list[dict]) -> None:
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

    def use_broker(self, broker) -> None:
        super().use_broker(broker)
        if broker.distributed:
            self._distributed = True
            self._origin = broker.origin.hex()
            broker.subscribe(f"datasync:{self.name}", self._on_broker_message, echo=True)

    def _announce(self, event: dict) -> None:
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

    def _deliver(self, delta: dict) -> None:
        # Dealers call Subscription.deliver_delta -> send_delta, which collects
        # the recipients of each outgoing delta so that it is encoded once.
        outbox: dict[int, tuple[dict, list, list]] = {}
        self._outbox = outbox
        try:
            for dealer in self.dm.get_dealers_for_model_class(delta["model"]):
                try:
                    dealer.deliver_delta(delta)
                except Exception:
                    counters["datasync_dealer_errors"] += 1
                    log.exception("%s: dealer %r failed on a %s delta of %r",
                                  self.name, dealer, delta["type"], delta["model"])
        finally:
            self._outbox = None
        resumable = self._resumable
        for out, clients, subs in outbox.values():
            msg: dict[str, Any] = {"type": "delta", "delta": out}
            if resumable:
                self._seq += 1
                msg["seq"] = self._seq
                msg["epoch"] = self.epoch
                for sub in subs:
                    sub.remember(self._seq, out)
                clients = [c for c in clients if c is not None]
            if len(clients) == 1:
                self.send_message_to(clients[0], msg)
            elif clients:
                self.broadcast(clients, msg)

    # -- delivery, called by subscriptions --------------------------------------
    def send_delta(self, client, delta: dict, subscription: Subscription | None = None) -> None:
        """Queue ``delta`` for ``client`` (batched while a publish is delivering).
        ``client`` is None for a resumable subscription whose connection is gone."""
        outbox = self._outbox
        if outbox is None or self._deliver_overridden:
            if self._resumable and subscription is not None:
                self._seq += 1
                subscription.remember(self._seq, delta)
                if client is not None:
                    self.send_message_to(client, {"type": "delta", "delta": delta, "seq": self._seq,
                                                  "epoch": self.epoch})
            elif client is not None:
                self.deliver_delta(client, delta)
            return
        keep = subscription is not None and self._resumable  # to remember what it was sent
        entry = outbox.get(id(delta))
        if entry is None:
            outbox[id(delta)] = (delta, [client], [subscription] if keep else [])
        else:
            entry[1].append(client)
            if keep:
                entry[2].append(subscription)

    def deliver_delta(self, client, delta: dict) -> None:
        """Send one delta to one client: ``{"type": "delta", "delta": delta}``."""
        self.send_message_to(client, {"type": "delta", "delta": delta})

    def buffer_overflowed(self, subscription: Subscription) -> None:
        """A pending subscription buffered more than MAX_BUFFERED_DELTAS: cancel it."""
        counters["datasync_subscriptions_overflowed"] += 1
        log.warning("%s: pending subscription cancelled after buffering %d deltas "
                    "(never acquired); acquiring it will answer 'No such subscription'",
                    self.name, len(subscription.buffer))
        self.do_cancel_subscription(subscription)

    # -- expiry -----------------------------------------------------------------
    def _expire(self, sub: Subscription) -> None:
        with self.lock:
            if self.subscriptions.get(sub.token) is not sub or sub.client is not None:
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
            if self.subscriptions.get(token) is not subscription:
                return
            if subscription.client is not None:
                self.sm.unlink_subscription_from_client(subscription)
            self.sm.unregister_subscription(subscription)
            self.dm.disconnect_subscription(subscription)
            subscription.close()

    # -- RPC commands -------------------------------------------------------------
    @rpc_command(lock=False)
    def acquireSubscription(self, req, token, since=None, epoch=None):
        """Link the subscription to the caller; buffered deltas arrive before the reply.

        With ``since`` (the ``seq`` of the last delta the page got; needs
        ``resume_window``) and ``epoch`` (that delta's): resume a subscription
        whose connection dropped — the deltas sent after ``since`` arrive
        first, then ``{"recovered": true, "epoch": ...}``; ``{"recovered":
        false, "epoch": ...}`` when they are no longer all kept (the
        subscription is cancelled) or when ``epoch`` is not this process's
        (the server restarted, or the page came back on another process): the
        page fetches its data and a new token, and the deltas of the answer's
        epoch start a new ``seq``."""
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
            self.broker.barrier(self.ANNOUNCE_WAIT)  # (without the lock)
        with self.lock:
            sub = self.subscriptions.get(token)
            if epoch is not None and epoch != self.epoch:
                return self._other_epoch(sub)
            if since is not None and sub is not None and sub.detached:
                return self._resume(req.client, sub, since)
            self._acquire(req, token)
            return {"recovered": True, "epoch": self.epoch} if since is not None else None

    def _other_epoch(self, sub: Subscription | None) -> dict:
        """A resumption from another epoch (another process's deltas, or this
        server before a restart): the page's position means nothing here.  The
        same answer whether the token is known or not; a pending copy of it
        (authorized on another process, acquired there) is dropped."""
        counters["datasync_resumptions_other_epoch"] += 1
        log.debug("%s: a resumption from another epoch (a restart, or another process): "
                  "not recovered", self.name)
        if sub is not None and sub.client is None and not sub.detached:
            self.do_cancel_subscription(sub)
        return {"recovered": False, "epoch": self.epoch}

    def _resume(self, client, sub: Subscription, since: int) -> dict:
        if retained.compact_key(wire.json_key(client.identity)) != sub.identity:
            # another identity (anonymous included): as for an unknown token
            counters["datasync_resumptions_refused_identity"] += 1
            raise RPCError("No such subscription")
        if since < sub.evicted:
            counters["datasync_resumptions_failed"] += 1
            log.info("%s: a resumption came too late (deltas since %d are gone): cancelled",
                     self.name, since)
            self.do_cancel_subscription(sub)
            return {"recovered": False, "epoch": self.epoch}
        mine = self.subscriptions_by_client.get(client)
        if mine is not None and len(mine) >= self.MAX_SUBSCRIPTIONS_PER_CLIENT:
            raise RPCError("Too many subscriptions")
        sub.cancel_timeout()
        sub.detached = False
        sub.client = client
        self.subscriptions_by_client.setdefault(client, {})[sub.token] = sub
        missed = sub.recent.since(sub, since) if sub.recent is not None else ()
        sub.recent = self._log_of(client)
        for seq, delta in missed:
            self.send_message_to(client, {"type": "delta", "delta": delta, "seq": seq,
                                          "epoch": self.epoch})
        counters["datasync_resumptions"] += 1
        return {"recovered": True, "epoch": self.epoch}

    def _detach(self, sub: Subscription) -> None:
        """The connection of a resumable subscription dropped: keep it for the window."""
        self.sm.unlink_subscription_from_client(sub)
        sub.detached = True
        factory = self.resume_timeout_factory or GeventTimeoutFactory
        sub.timer = factory.call_later(self.resume_window, self._expire_detached, sub)

    def _expire_detached(self, sub: Subscription) -> None:
        with self.lock:
            if self.subscriptions.get(sub.token) is not sub or not sub.detached:
                return
            sub.timer = None
            self.do_cancel_subscription(sub)
            counters["datasync_resume_windows_expired"] += 1

    def _log_of(self, client) -> ResumeLog:
        log_ = self._logs.get(client)
        if log_ is None:
            log_ = self._logs[client] = ResumeLog(self.resume_buffer)
        return log_

    def _acquire(self, req, token: str) -> None:
        sub = self.subscriptions.get(token)
        if sub is None:
            raise RPCError("No such subscription")
        client = req.client
        identity = retained.compact_key(wire.json_key(client.identity))
        if sub.detached and sub.identity != identity:
            raise RPCError("No such subscription")  # not even whether it exists
        if sub.client is not None or sub.detached:
            raise RPCError("Subscription already acquired")
        mine = self.subscriptions_by_client.get(client)
        if mine is not None and len(mine) >= self.MAX_SUBSCRIPTIONS_PER_CLIENT:
            raise RPCError("Too many subscriptions")
        sub.identity = identity
        if self._resumable:
            sub.recent = self._log_of(client)
        for delta in self.sm.link_subscription_to_client(sub, client):
            self.send_delta(client, delta, sub)
        if self._distributed:  # other processes drop their pending copy (queued, no I/O here)
            self._announce({"op": "acquired", "token": token})

    @rpc_command
    def cancelSubscription(self, req, token):
        """Cancel a subscription the caller acquired."""
        if not isinstance(token, str):
            raise RPCError("token must be string")
        sub = self.subscriptions.get(token)
        if sub is None or sub.client is not req.client:
            raise RPCError("No such subscription")
        self.do_cancel_subscription(sub)

    def client_disconnected(self, client) -> None:
        with self.lock:
            mine = self.subscriptions_by_client.get(client)
            for sub in list(mine.values()) if mine else ():
                if self._resumable and sub.recent is not None:
                    self._detach(sub)  # it keeps the connection's log for the window
                else:
                    self.do_cancel_subscription(sub)
            self._logs.pop(client, None)

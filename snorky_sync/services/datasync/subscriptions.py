"""Subscriptions: what a token stands for.

A :class:`Subscription` is a set of :class:`SubscriptionItem` (dealer name +
query) authorized by the backend under a random token, in one
:class:`SubscriptionState`.  Until a client acquires the token it is
PENDING: deltas for it are buffered, in order, and a timer will expire it.
Once ACQUIRED, deltas go straight to the client.

The service owns every subscription and moves its state; on its own path
these objects only carry it (the service never calls back into them to
send).  Snorky 0.1's methods (``deliver_delta``, ``got_client``,
``flush_awaited_client_buffer``) keep their 0.1 effect and send through the
subscription's ``service``.  All methods are called under the owning
service's lock.
"""
from __future__ import annotations

import collections
import enum
import secrets
import string
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...client import Client
    from .dealers import Dealer

__all__ = ["Subscription", "SubscriptionItem", "SubscriptionState", "ResumeLog", "new_token",
           "TOKEN_ALPHABET", "TOKEN_LENGTH"]

TOKEN_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_LENGTH = 32


def new_token() -> str:
    """32 characters of ``[a-z0-9]`` from the OS CSPRNG (about 165 bits)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


class SubscriptionItem:
    """One (dealer, query) pair of a subscription.  Hashed by identity."""

    __slots__ = ("dealer_name", "query", "subscription", "dealer")

    def __init__(self, dealer_name: str, query: Any, subscription: Subscription | None = None) -> None:
        self.dealer_name = dealer_name
        self.query = query
        self.subscription = subscription
        self.dealer: Dealer | None = None

    def __repr__(self) -> str:
        return f"<SubscriptionItem {self.dealer_name!r} {self.query!r}>"


class ResumeLog:
    """The last deltas sent to one connection's resumable subscriptions, as
    ``(seq, delta, subscription)``: one log per connection, whatever its
    number of subscriptions, so what a connection keeps for resumptions is
    bounded by ``maxlen`` entries (each refers to a delta shared with every
    other recipient).  When an entry is pushed out, its subscription's
    ``evicted`` becomes that seq: a resumption from before it cannot be
    complete."""

    __slots__ = ("entries",)

    def __init__(self, maxlen: int) -> None:
        self.entries: collections.deque[tuple[int, dict[Any, Any], Subscription]] = collections.deque(
            maxlen=maxlen)

    def append(self, seq: int, delta: dict[Any, Any], subscription: Subscription) -> None:
        entries = self.entries
        if len(entries) == entries.maxlen:
            old_seq, _, old_sub = entries[0]
            old_sub.evicted = old_seq
        entries.append((seq, delta, subscription))

    def since(self, subscription: Subscription, since: int) -> list[tuple[int, dict[Any, Any]]]:
        """``subscription``'s deltas after ``since``, in order."""
        return [(seq, delta) for seq, delta, sub in self.entries if sub is subscription and seq > since]


class SubscriptionState(enum.Enum):
    """Where a :class:`Subscription` is; the service moves it along:

    - PENDING -> ACQUIRED: ``acquireSubscription``;
    - ACQUIRED -> DETACHED: its connection dropped (``resume_window``);
    - DETACHED -> ACQUIRED: resumed (``acquireSubscription`` with ``since``);
    - RESUMING -> ACQUIRED: taken over from another process (Redis broker)
      and resumed here;
    - any -> CANCELLED: cancelled, expired, evicted, overflowed, its
      connection dropped (no ``resume_window``), the window ended.
    """

    PENDING = "pending"
    """Authorized, not acquired: deltas are buffered, the expiry timer runs."""
    ACQUIRED = "acquired"
    """A connection (``client``) holds it: deltas are sent."""
    DETACHED = "detached"
    """Resumable and its connection dropped: deltas are numbered and kept
    for a resumption, the resume-window timer runs."""
    RESUMING = "resuming"
    """Claimed from the process that kept it detached (Redis broker), being
    handed over: deltas are buffered until the ones it missed there are
    sent, then it is ACQUIRED by the claiming connection."""
    CANCELLED = "cancelled"
    """Forgotten everywhere: deltas are ignored."""


PENDING = SubscriptionState.PENDING
ACQUIRED = SubscriptionState.ACQUIRED
DETACHED = SubscriptionState.DETACHED
RESUMING = SubscriptionState.RESUMING
CANCELLED = SubscriptionState.CANCELLED


class Subscription:
    """A contract a client signs by acquiring its token.

    ``state`` (a :class:`SubscriptionState`) says where it is; ``client``
    is the connection holding it (only while ACQUIRED); ``service``: what
    sends its deltas (Snorky 0.1's second argument: the
    :class:`~snorky_sync.services.datasync.DataSyncService` that authorized
    it, or any object with 0.1's ``deliver_delta(client, delta)``; None: none
    yet).  ``requester``: who the web application asked for it on behalf of
    (None: not said); ``identity``: the identity key of the connection that
    acquired it (resumption is bound to it).

    The service's own path treats it as data: its routing reads ``state``
    and decides what a delta routed here becomes (sent, buffered, kept for a
    resumption, dropped), and acquiring it (:meth:`acquire`) hands back the
    buffered deltas.  Snorky 0.1's methods keep their 0.1 effect:
    :meth:`deliver_delta`, :meth:`got_client` and
    :meth:`flush_awaited_client_buffer` send through ``service``.
    """

    __slots__ = ("token", "client", "items", "service", "buffer", "timer", "state", "inbox",
                 "recent", "evicted", "requester", "identity", "topics", "gate", "claimer")

    def __init__(self, items: Iterable[SubscriptionItem], service: Any = None,
                 token: str | None = None, requester: Any = None) -> None:
        if service is not None and not callable(getattr(service, "deliver_delta", None)):
            raise TypeError("Subscription(items, service): service sends the deltas, with "
                            f"deliver_delta(client, delta); got {type(service).__name__}")
        self.token: str | None = token  # a str once registered (SubscriptionManager)
        self.requester = requester
        self.identity: Any = None
        self.client: Client | None = None
        self.service = service
        self.state = PENDING
        self.items = list(items)
        for item in self.items:
            item.subscription = self
        self.buffer: list[Any] = []   # PENDING: the deltas awaiting the client
        # while a routing pass collects what a 0.1 dealer's deliver_delta pushes
        # here (DealerManager.route): a list; otherwise None
        self.inbox: list[Any] | None = None
        self.timer: Any = None  # the expiry or resume-window timer's handle (snorky_sync.timeout)
        # resumable subscriptions (DataSyncService(resume_window=...)): the log
        # of its connection's last deltas and the newest seq of this
        # subscription pushed out of it
        self.recent: ResumeLog | None = None
        self.evicted = 0
        # with a distributed broker (the service's): the model topics it made
        # this process subscribe to; while it is handed over between processes,
        # the models whose deltas it must not take (``gate``) and, on the
        # process giving it, the process taking it (``claimer``)
        self.topics: tuple[str, ...] = ()
        self.gate: set[str] | None = None
        self.claimer: str | None = None

    def __repr__(self) -> str:
        return (f"<Subscription {self.state.value} items={len(self.items)} "
                f"buffered={len(self.buffer)}>")

    # Snorky 0.1's private names, which its own backend and tests use
    _awaited_client_buffer = property(lambda self: self.buffer,
                                      doc="0.1's name of :attr:`buffer`.")
    _awaited_client_timeout = property(
        lambda self: self.timer, lambda self, handle: setattr(self, "timer", handle),
        doc="0.1's name of :attr:`timer` (0.1's backend set it to the expiry timer).")

    def deliver_delta(self, delta: Any) -> None:
        """Snorky 0.1's push path: send ``delta`` to the client, or buffer it
        until a client acquires the subscription (ignored once cancelled).

        During a routing pass of a 0.1 dealer (one overriding
        ``Dealer.deliver_delta``) the delta is collected instead, and the
        service dispatches it by state once the dealer returns.  Otherwise a
        :class:`~snorky_sync.services.datasync.DataSyncService` dispatches it
        at once, as if routed (sent, buffered, kept for a resumption); any
        other ``service`` gets 0.1's ``service.deliver_delta(client, delta)``.
        """
        if self.state is CANCELLED:
            return
        inbox = self.inbox
        if inbox is not None:
            inbox.append(delta)
            return
        service = self.service
        dispatch = getattr(service, "dispatch_pushed", None)
        if dispatch is not None:
            dispatch(self, delta)
        elif self.client is None:
            self.buffer.append(delta)
        elif service is None:
            raise RuntimeError("Subscription(items, service) without a service cannot send to "
                               "its client: give it the DataSyncService (or an object with "
                               "deliver_delta(client, delta)) as its second argument")
        else:
            service.deliver_delta(self.client, delta)

    def acquire(self, client: Client) -> list[Any]:
        """PENDING -> ACQUIRED by ``client``: stop the expiry timer and hand
        over the buffered deltas, oldest first (the service sends them)."""
        if self.state is not PENDING:
            raise RuntimeError(f"subscription {self.state.value}, cannot be acquired")
        self.state = ACQUIRED
        self.client = client
        self.cancel_timeout()
        return self.take_buffer()

    def got_client(self, client: Client) -> None:
        """Snorky 0.1's: link to ``client`` (:meth:`acquire`) and send it the
        deltas buffered meanwhile (:meth:`flush_awaited_client_buffer`)."""
        if self.buffer and self.service is None:
            raise RuntimeError("Subscription(items, service) without a service cannot send its "
                               f"{len(self.buffer)} buffered deltas to its client: give it the "
                               "DataSyncService (or an object with deliver_delta(client, delta)) "
                               "as its second argument")
        self.buffer = self.acquire(client)
        self.flush_awaited_client_buffer()

    def lost_client(self) -> None:
        """Unlink from the client (as in 0.1: later deltas are buffered again
        until a client acquires it).  The service then detaches or cancels it."""
        self.client = None
        if self.state is ACQUIRED:
            self.state = PENDING

    def detach(self) -> None:
        """-> DETACHED: the connection is gone; kept for a resumption."""
        if self.state is CANCELLED:
            raise RuntimeError("subscription cancelled, cannot be detached")
        self.state = DETACHED
        self.client = None

    def resume(self, client: Client) -> None:
        """DETACHED (or RESUMING) -> ACQUIRED by ``client`` (the resume-window timer stops)."""
        if self.state is not DETACHED and self.state is not RESUMING:
            raise RuntimeError(f"subscription {self.state.value}, cannot be resumed")
        self.cancel_timeout()
        self.state = ACQUIRED
        self.client = client

    def remember(self, seq: int, delta: dict[Any, Any]) -> None:
        """Keep a sent delta for a resumption (its connection's log's oldest
        entry goes when the log is full)."""
        recent = self.recent
        if recent is not None:
            recent.append(seq, delta, self)

    def take_buffer(self) -> list[Any]:
        """The deltas buffered while awaiting the client (oldest first); empties the buffer."""
        buffered, self.buffer = self.buffer, []
        return buffered

    def flush_awaited_client_buffer(self) -> None:
        """Snorky 0.1's: send the deltas buffered while awaiting the client
        (oldest first) through :meth:`deliver_delta`, emptying the buffer."""
        for delta in self.take_buffer():
            self.deliver_delta(delta)

    def cancel_timeout(self) -> None:
        """Stop the expiry timer (a handle from a :mod:`snorky_sync.timeout`
        factory; from inside its own callback it is only forgotten)."""
        timer, self.timer = self.timer, None
        if timer is not None and not getattr(timer, "cancelled", False):
            timer.cancel()

    def close(self) -> None:
        """-> CANCELLED: no more deltas, no timer, no buffer, no client."""
        self.state = CANCELLED
        self.cancel_timeout()
        self.buffer = []
        self.inbox = None
        self.client = None

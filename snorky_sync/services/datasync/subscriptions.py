"""Subscriptions: what a token stands for.

A :class:`Subscription` is a set of :class:`SubscriptionItem` (dealer name +
query) authorized by the backend under a random token.  Until a client
acquires the token it is *pending*: deltas for it are buffered, in order,
and a timer will expire it.  Once acquired, deltas go straight to the client.

The service owns every subscription and its state; these objects only carry
it.  All methods are called under the owning service's lock.
"""
from __future__ import annotations

import collections
import secrets
import string
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .dealers import Dealer
    from .service import DataSyncService

__all__ = ["Subscription", "SubscriptionItem", "ResumeLog", "new_token", "TOKEN_ALPHABET",
           "TOKEN_LENGTH"]

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
        self.entries: collections.deque[tuple[int, dict, Subscription]] = collections.deque(
            maxlen=maxlen)

    def append(self, seq: int, delta: dict, subscription: Subscription) -> None:
        entries = self.entries
        if len(entries) == entries.maxlen:
            old_seq, _, old_sub = entries[0]
            old_sub.evicted = old_seq
        entries.append((seq, delta, subscription))

    def since(self, subscription: Subscription, since: int) -> list[tuple[int, dict]]:
        """``subscription``'s deltas after ``since``, in order."""
        return [(seq, delta) for seq, delta, sub in self.entries if sub is subscription and seq > since]


class Subscription:
    """A contract a client signs by acquiring its token.

    States: *pending* (``client is None``, deltas buffered, expiry timer
    running), *acquired* (``client`` set; deltas delivered), *cancelled*
    (``active`` false; deltas ignored).  ``requester``: who the web
    application asked for it on behalf of (None: not said); ``identity``:
    the identity key of the connection that acquired it (resumption is
    bound to it).
    """

    __slots__ = ("token", "client", "items", "service", "buffer", "timer", "active",
                 "recent", "evicted", "detached", "requester", "identity")

    def __init__(self, items: Iterable[SubscriptionItem], service: DataSyncService,
                 token: str | None = None, requester: Any = None) -> None:
        self.token: Any = token  # a str once registered (SubscriptionManager)
        self.requester = requester
        self.identity: Any = None
        self.client = None
        self.service = service
        self.items = list(items)
        for item in self.items:
            item.subscription = self
        self.buffer: list[dict] = []
        self.timer: Any = None  # the expiry timer's handle (snorky_sync.timeout)
        self.active = True
        # resumable subscriptions (DataSyncService(resume_window=...)): the log
        # of its connection's last deltas, the newest seq of this subscription
        # pushed out of it, and whether its connection is gone (within the
        # resume window)
        self.recent: ResumeLog | None = None
        self.evicted = 0
        self.detached = False

    def __repr__(self) -> str:
        state = "cancelled" if not self.active else ("pending" if self.client is None else "acquired")
        return f"<Subscription {state} items={len(self.items)} buffered={len(self.buffer)}>"

    def deliver_delta(self, delta: dict) -> None:
        """Send ``delta`` to the client, or buffer it until the token is acquired."""
        if not self.active:
            return
        if self.client is not None or self.detached:
            self.service.send_delta(self.client, delta, self)
            return
        self.buffer.append(delta)
        if len(self.buffer) > self.service.MAX_BUFFERED_DELTAS:
            self.service.buffer_overflowed(self)

    def got_client(self, client) -> list[dict]:
        """Link to ``client``: stop the expiry timer and hand over the buffered deltas."""
        if self.client is not None:
            raise RuntimeError("subscription already acquired")
        self.client = client
        self.cancel_timeout()
        buffered, self.buffer = self.buffer, []
        return buffered

    def remember(self, seq: int, delta: dict) -> None:
        """Keep a sent delta for a resumption (its connection's log's oldest
        entry goes when the log is full)."""
        recent = self.recent
        if recent is not None:
            recent.append(seq, delta, self)

    def lost_client(self) -> None:
        """Unlink from the client: later deltas are no longer delivered to it."""
        self.client = None

    def flush_awaited_client_buffer(self) -> None:
        """Deliver the buffered deltas to the (now linked) client and empty the buffer."""
        buffered, self.buffer = self.buffer, []
        for delta in buffered:
            self.deliver_delta(delta)

    def cancel_timeout(self) -> None:
        """Stop the expiry timer (a handle from a :mod:`snorky_sync.timeout`
        factory; from inside its own callback it is only forgotten)."""
        timer, self.timer = self.timer, None
        if timer is not None and not getattr(timer, "cancelled", False):
            timer.cancel()

    def close(self) -> None:
        """Cancelled: no more deltas, no timer, no buffer, no client."""
        self.active = False
        self.cancel_timeout()
        self.buffer = []
        self.client = None

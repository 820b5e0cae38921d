"""SubscriptionManager: the live subscriptions of a DataSync service.

Pending subscriptions are also kept by *requester* (the page's user or
address, as the web application names it when it asks for the token; None
when it names nobody, as Snorky 0.1's backends do), oldest first, with the
requester holding the most found in constant time: the service caps pending
subscriptions per requester and evicts the biggest requester's oldest when
the process-wide cap is reached (see ``DataSyncService.do_authorize_subscription``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..subscriptions import Subscription, new_token

if TYPE_CHECKING:  # pragma: no cover
    from ....client import Client

__all__ = ["SubscriptionManager", "SubscriptionsByClient", "token_of"]


def token_of(subscription: Subscription) -> str:
    """The token of a registered subscription (RuntimeError for one never registered)."""
    token = subscription.token
    if token is None:  # registered subscriptions always have one
        raise RuntimeError(f"{subscription!r} has no token (it was never registered)")
    return token


class SubscriptionsByClient(dict[Any, dict[str, Subscription]]):
    """client -> {token: subscription}, read also with Snorky 0.1's MultiDict
    methods (0.1's ``subscriptions_by_client`` was a MultiDict)."""

    __slots__ = ()

    def get_set(self, client: Any) -> set[Subscription]:
        """The subscriptions ``client`` acquired (a new set; empty if none)."""
        mine = self.get(client)
        return set(mine.values()) if mine else set()

    def in_set(self, client: Any, subscription: Any) -> bool:
        """Whether ``client`` holds ``subscription``."""
        mine = self.get(client)
        token = getattr(subscription, "token", None)
        return mine is not None and token is not None and mine.get(token) is subscription


class SubscriptionManager:
    """Subscriptions by token (``subscriptions_by_token``: every live one),
    the pending ones (``pending``: not acquired yet) and by client
    (``subscriptions_by_client``: client -> {token: subscription})."""

    __slots__ = ("subscriptions_by_token", "pending", "subscriptions_by_client",
                 "pending_by_requester", "_by_count", "_most")

    def __init__(self) -> None:
        self.subscriptions_by_token: dict[str, Subscription] = {}
        self.pending: dict[str, Subscription] = {}
        self.subscriptions_by_client = SubscriptionsByClient()
        #: requester -> {token: subscription}, oldest first
        self.pending_by_requester: dict[Any, dict[str, Subscription]] = {}
        self._by_count: dict[int, dict[Any, None]] = {}  # pending count -> requesters
        self._most = 0  # the largest pending count of a requester

    # -- pending subscriptions by requester ------------------------------------
    def pending_of(self, requester: Any) -> int:
        """How many pending subscriptions ``requester`` holds."""
        mine = self.pending_by_requester.get(requester)
        return len(mine) if mine else 0

    def biggest_requester(self) -> tuple[Any, int]:
        """``(requester, count)`` of one requester holding the most pending
        subscriptions (``(None, 0)`` when none is pending)."""
        if not self._most:
            return None, 0
        return next(iter(self._by_count[self._most])), self._most

    def oldest_pending(self, requester: Any) -> Subscription | None:
        """``requester``'s oldest pending subscription."""
        mine = self.pending_by_requester.get(requester)
        return next(iter(mine.values())) if mine else None

    def _recount(self, requester: Any, old: int, new: int) -> None:
        if old:
            bucket = self._by_count[old]
            del bucket[requester]
            if not bucket:
                del self._by_count[old]
                if self._most == old:
                    self._most = new
        if new:
            self._by_count.setdefault(new, {})[requester] = None
            if new > self._most:
                self._most = new

    def _pending_add(self, token: str, subscription: Subscription) -> None:
        self.pending[token] = subscription
        requester = getattr(subscription, "requester", None)  # (0.1's duck-typed subscriptions: none)
        mine = self.pending_by_requester.setdefault(requester, {})
        mine[token] = subscription
        self._recount(requester, len(mine) - 1, len(mine))

    def _pending_remove(self, token: str) -> None:
        subscription = self.pending.pop(token, None)
        if subscription is None:
            return
        requester = getattr(subscription, "requester", None)
        mine = self.pending_by_requester[requester]
        del mine[token]
        self._recount(requester, len(mine) + 1, len(mine))
        if not mine:
            del self.pending_by_requester[requester]

    generate_token = staticmethod(new_token)

    def register_subscription(self, subscription: Subscription) -> str:
        """Track a new, pending ``subscription``, giving it a fresh token
        unless it has one already (one authorized on another process); returns it."""
        token = subscription.token
        if token is None:
            token = new_token()
            while token in self.subscriptions_by_token:  # practically never
                token = new_token()
            subscription.token = token
        elif token in self.subscriptions_by_token:
            raise RuntimeError("This subscription's token is registered already.")
        self.subscriptions_by_token[token] = subscription
        self._pending_add(token, subscription)
        return token

    def adopt(self, subscription: Subscription) -> None:
        """Track ``subscription`` under its token without it being pending
        (one being taken over from another process: nobody acquires it)."""
        token = token_of(subscription)
        if token in self.subscriptions_by_token:
            raise RuntimeError("This subscription's token is registered already.")
        self.subscriptions_by_token[token] = subscription

    def unregister_subscription(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (unlink it from its client first); its
        ``token`` becomes None, as in 0.1."""
        token = token_of(subscription)
        del self.subscriptions_by_token[token]
        self._pending_remove(token)
        subscription.token = None

    def get_subscription_with_token(self, token: str) -> Subscription | None:
        """The live subscription of ``token``, or None."""
        return self.subscriptions_by_token.get(token)

    def link(self, subscription: Subscription, client: Client) -> list[Any]:
        """``client`` acquired ``subscription``; returns the deltas it had
        buffered, for the service to send (``Subscription.acquire``)."""
        buffered = subscription.acquire(client)
        self._linked(subscription, client)
        return buffered

    def link_subscription_to_client(self, subscription: Subscription, client: Client) -> None:
        """Snorky 0.1's: ``client`` acquired ``subscription``
        (``subscription.got_client(client)``, which sends it the deltas
        buffered meanwhile)."""
        subscription.got_client(client)
        self._linked(subscription, client)

    def _linked(self, subscription: Subscription, client: Client) -> None:
        token = token_of(subscription)
        self._pending_remove(token)
        self.subscriptions_by_client.setdefault(client, {})[token] = subscription

    def unlink_subscription_from_client(self, subscription: Subscription) -> None:
        """Detach ``subscription`` from its client."""
        client = subscription.client
        mine = self.subscriptions_by_client.get(client)
        if mine is not None:
            mine.pop(token_of(subscription), None)
            if not mine:
                del self.subscriptions_by_client[client]
        subscription.lost_client()

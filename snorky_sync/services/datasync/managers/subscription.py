"""SubscriptionManager: the live subscriptions of a DataSync service."""
from __future__ import annotations

from typing import Any

from ..subscriptions import Subscription, new_token

__all__ = ["SubscriptionManager"]


def _token(subscription: Subscription) -> str:
    token = subscription.token
    if token is None:  # registered subscriptions always have one
        raise RuntimeError(f"{subscription!r} has no token (it was never registered)")
    return token


class SubscriptionManager:
    """Subscriptions by token (``subscriptions_by_token``: every live one),
    the pending ones (``pending``: not acquired yet) and by client
    (``subscriptions_by_client``: client -> {token: subscription})."""

    __slots__ = ("subscriptions_by_token", "pending", "subscriptions_by_client")

    def __init__(self) -> None:
        self.subscriptions_by_token: dict[str, Subscription] = {}
        self.pending: dict[str, Subscription] = {}
        self.subscriptions_by_client: dict[Any, dict[str, Subscription]] = {}

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
        self.pending[token] = subscription
        return token

    def unregister_subscription(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (unlink it from its client first)."""
        token = _token(subscription)
        del self.subscriptions_by_token[token]
        self.pending.pop(token, None)

    def get_subscription_with_token(self, token: str) -> Subscription | None:
        """The live subscription of ``token``, or None."""
        return self.subscriptions_by_token.get(token)

    def link_subscription_to_client(self, subscription: Subscription, client) -> list:
        """``client`` acquired ``subscription``; returns the deltas it had buffered."""
        buffered = subscription.got_client(client)
        token = _token(subscription)
        del self.pending[token]
        self.subscriptions_by_client.setdefault(client, {})[token] = subscription
        return buffered

    def unlink_subscription_from_client(self, subscription: Subscription) -> None:
        """Detach ``subscription`` from its client."""
        client = subscription.client
        mine = self.subscriptions_by_client.get(client)
        if mine is not None:
            mine.pop(_token(subscription), None)
            if not mine:
                del self.subscriptions_by_client[client]
        subscription.lost_client()

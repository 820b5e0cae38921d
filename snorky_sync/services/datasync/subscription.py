"""Snorky 0.1's module path for subscriptions (``snorky.services.datasync.subscription``)."""
from .subscriptions import Subscription, SubscriptionItem

__all__ = ["Subscription", "SubscriptionItem"]

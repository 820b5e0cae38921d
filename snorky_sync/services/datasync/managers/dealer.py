"""DealerManager: the dealers of a DataSync service, by name and by model,
and the routing of a delta to ``(item, delta)`` pairs.

A dealer routes with ``Dealer.route_delta``, which returns
``(item, delta)`` pairs.  A dealer overriding Snorky 0.1's
``Dealer.deliver_delta`` pushes into its items' subscriptions
instead; the manager keeps the subscriptions of such a dealer's items,
opens their ``inbox`` for the call (``Subscription.deliver_delta`` collects
there) and takes what it pushed right after.

The service routes with :meth:`DealerManager.route` (or
:meth:`DealerManager.route_delta`) and dispatches the pairs itself.
Snorky 0.1's :meth:`DealerManager.deliver_delta` delivers: through the
``sink`` its service gave it (the service's publishing), or, for a manager
of its own (``DealerManager()``, as 0.1's tests use it), by calling each
dealer's ``deliver_delta`` as 0.1 did.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..dealers import Dealer

if TYPE_CHECKING:  # pragma: no cover
    from ..deltas import Delta
    from ..subscriptions import Subscription, SubscriptionItem

__all__ = ["UnknownDealer", "UnknownModelClass", "DealerManager", "DuplicateDealer"]


class UnknownDealer(KeyError):
    """No dealer has that name."""

    def __init__(self, dealer_name: str) -> None:
        super().__init__(dealer_name)
        self.dealer_name = dealer_name

    def __str__(self) -> str:
        return "No dealer named '%s'." % self.dealer_name


class UnknownModelClass(KeyError):
    """No dealer handles that model."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.dealer_name = model

    def __str__(self) -> str:
        return ("No model class with name '%s' has been registered in the dealer manager"
                % self.dealer_name)


class DuplicateDealer(ValueError, RuntimeError):
    """A dealer of that name is registered already (RuntimeError in 0.1)."""


def overrides_deliver_delta(dealer: Any) -> bool:
    """Whether ``dealer`` pushes through 0.1's ``deliver_delta`` hook of its own
    (a method overriding ``Dealer.deliver_delta``, or, on a dealer of 0.1's
    duck type, any ``deliver_delta`` it has)."""
    method = getattr(dealer, "deliver_delta", None)
    return method is not None and getattr(method, "__func__", None) is not Dealer.deliver_delta


class DealerManager:
    """Dealers indexed by name (``dealers_by_name``) and by model
    (``dealers_by_model``: model -> list, in registration order);
    ``pushing``: for each dealer that overrides ``deliver_delta``, the
    subscriptions holding an item of it, with that item (their inboxes are
    collected after each of its calls).  ``sink``: what
    :meth:`deliver_delta` hands a delta to (a ``DataSyncService`` gives its
    own publishing); None: :meth:`deliver_delta` calls each dealer's
    ``deliver_delta``, as 0.1's manager did."""

    __slots__ = ("dealers_by_name", "dealers_by_model", "pushing", "sink")

    def __init__(self, sink: Callable[[Any], object] | None = None) -> None:
        self.dealers_by_name: dict[str, Dealer] = {}
        self.dealers_by_model: dict[str, list[Any]] = {}
        self.pushing: dict[Any, dict[Any, Any]] = {}  # dealer -> {subscription: its item}
        self.sink = sink

    def register_dealer(self, dealer: Dealer) -> None:
        """Add ``dealer`` (DuplicateDealer if its name is taken)."""
        name = dealer.name
        if name in self.dealers_by_name:
            raise DuplicateDealer(f"a dealer named {name!r} is already registered")
        self.dealers_by_name[name] = dealer
        self.dealers_by_model.setdefault(dealer.model, []).append(dealer)
        if overrides_deliver_delta(dealer):
            self.pushing[dealer] = {}

    def unregister_dealer(self, dealer: Any) -> None:
        """Remove ``dealer`` (an instance)."""
        name, model = dealer.name, dealer.model
        if self.dealers_by_name.get(name) is not dealer:
            raise ValueError(f"{dealer!r} is not registered")
        del self.dealers_by_name[name]
        self.pushing.pop(dealer, None)
        same_model = self.dealers_by_model[model]
        same_model.remove(dealer)
        if not same_model:
            del self.dealers_by_model[model]

    def get_dealer(self, name: str) -> Dealer:
        """The dealer named ``name`` (UnknownDealer if none)."""
        try:
            return self.dealers_by_name[name]
        except KeyError:
            raise UnknownDealer(name) from None

    def get_dealers_for_model_class(self, model: str) -> list[Any]:
        """The dealers of ``model`` (UnknownModelClass if none)."""
        try:
            return self.dealers_by_model[model]
        except KeyError:
            raise UnknownModelClass(model) from None

    def route(self, dealer: Any, delta: dict[Any, Any]) -> Iterable[tuple[Any, dict[Any, Any]]]:
        """The ``(item, delta)`` pairs ``dealer`` routes ``delta`` to, in its
        order: ``dealer.route_delta(delta)`` (items it was given by
        ``add_subscription_item``), or, for a dealer overriding
        ``deliver_delta``, what that pushed into the inboxes of its items'
        subscriptions, each paired with the subscription's item of that
        dealer (also when it raises: the error comes after them)."""
        pushing = self.pushing.get(dealer)
        if pushing is None:
            routed: Iterable[tuple[Any, dict[Any, Any]]] = dealer.route_delta(delta)
            return routed
        return self._pushed(dealer, delta, pushing)

    @staticmethod
    def _pushed(dealer: Any, delta: dict[Any, Any], pushing: dict[Any, Any]) -> Iterator[tuple[Any, dict[Any, Any]]]:
        mine = list(pushing.items())
        for subscription, _ in mine:  # what it pushes into these is collected, not sent
            subscription.inbox = []
        try:
            dealer.deliver_delta(delta)
        finally:  # (an error is raised once these are taken)
            collected: list[tuple[Any, dict[Any, Any]]] = []
            for subscription, item in mine:
                inbox, subscription.inbox = subscription.inbox, None
                if inbox:
                    collected.extend((item, out) for out in inbox)
            yield from collected

    def route_delta(self, delta: dict[Any, Any]) -> list[tuple[Any, dict[Any, Any]]]:
        """The ``(item, delta)`` pairs the dealers of ``delta``'s model route it
        to (none: no pair), in their order; nothing is sent."""
        return [pair for dealer in self.dealers_by_model.get(delta["model"], ())
                for pair in self.route(dealer, delta)]

    def deliver_delta(self, delta: Delta) -> None:
        """Snorky 0.1's: deliver ``delta`` to the subscribers of the dealers of
        its model (UnknownModelClass if it has none, as in 0.1).  A service's
        manager hands it to its ``sink`` (``DataSyncService`` publishes it:
        validated, to every process, sent, buffered or kept by each
        subscription's state); a manager of its own calls each dealer's
        ``deliver_delta``, as 0.1 did."""
        dealers = self.get_dealers_for_model_class(delta["model"])
        if self.sink is not None:
            self.sink(delta)
            return
        for dealer in list(dealers):
            dealer.deliver_delta(delta)

    def connect_subscription(self, subscription: Subscription) -> None:
        """Add every item of ``subscription`` to its dealer (all or none)."""
        added: list[tuple[SubscriptionItem, Dealer]] = []
        try:
            for item in subscription.items:
                dealer = item.dealer = self.get_dealer(item.dealer_name)
                dealer.add_subscription_item(item)
                added.append((item, dealer))
        except BaseException:
            for item, dealer in added:
                dealer.remove_subscription_item(item)
            raise
        for item, dealer in added:
            pushing = self.pushing.get(dealer)
            if pushing is not None:
                pushing.setdefault(subscription, item)

    def disconnect_subscription(self, subscription: Subscription) -> None:
        """Remove every item of ``subscription`` from its dealer."""
        for item in subscription.items:
            dealer = item.dealer or self.get_dealer(item.dealer_name)
            dealer.remove_subscription_item(item)
            pushing = self.pushing.get(dealer)
            if pushing is not None:
                pushing.pop(subscription, None)

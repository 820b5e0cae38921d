"""DealerManager: the dealers of a DataSync service, by name and by model."""
from __future__ import annotations

from typing import Any

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


class DealerManager:
    """Dealers indexed by name (``dealers_by_name``) and by model
    (``dealers_by_model``: model -> list, in registration order)."""

    __slots__ = ("dealers_by_name", "dealers_by_model")

    def __init__(self) -> None:
        self.dealers_by_name: dict[str, Any] = {}
        self.dealers_by_model: dict[str, list] = {}

    def register_dealer(self, dealer) -> None:
        """Add ``dealer`` (DuplicateDealer if its name is taken)."""
        name = dealer.name
        if name in self.dealers_by_name:
            raise DuplicateDealer(f"a dealer named {name!r} is already registered")
        self.dealers_by_name[name] = dealer
        self.dealers_by_model.setdefault(dealer.model, []).append(dealer)

    def unregister_dealer(self, dealer: Any) -> None:
        """Remove ``dealer`` (an instance)."""
        name, model = dealer.name, dealer.model
        if self.dealers_by_name.get(name) is not dealer:
            raise ValueError(f"{dealer!r} is not registered")
        del self.dealers_by_name[name]
        same_model = self.dealers_by_model[model]
        same_model.remove(dealer)
        if not same_model:
            del self.dealers_by_model[model]

    def get_dealer(self, name: str):
        """The dealer named ``name`` (UnknownDealer if none)."""
        try:
            return self.dealers_by_name[name]
        except KeyError:
            raise UnknownDealer(name) from None

    def get_dealers_for_model_class(self, model: str) -> list:
        """The dealers of ``model`` (UnknownModelClass if none)."""
        try:
            return self.dealers_by_model[model]
        except KeyError:
            raise UnknownModelClass(model) from None

    def deliver_delta(self, delta) -> None:
        """Hand ``delta`` to every dealer of its model (none: nobody gets it)."""
        for dealer in self.dealers_by_model.get(delta["model"], ()):
            dealer.deliver_delta(delta)

    def connect_subscription(self, subscription) -> None:
        """Add every item of ``subscription`` to its dealer (all or none)."""
        added = []
        try:
            for item in subscription.items:
                dealer = item.dealer = self.get_dealer(item.dealer_name)
                dealer.add_subscription_item(item)
                added.append(item)
        except BaseException:
            for item in added:
                item.dealer.remove_subscription_item(item)
            raise

    def disconnect_subscription(self, subscription) -> None:
        """Remove every item of ``subscription`` from its dealer."""
        for item in subscription.items:
            (item.dealer or self.get_dealer(item.dealer_name)).remove_subscription_item(item)

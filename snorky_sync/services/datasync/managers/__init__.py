"""The bookkeeping of a :class:`~snorky_sync.services.datasync.DataSyncService`
(Snorky 0.1's ``managers``): ``service.dm`` (:class:`.dealer.DealerManager`)
holds its dealers, ``service.sm`` (:class:`.subscription.SubscriptionManager`)
its subscriptions.  Both are called under the service's lock."""
from .dealer import DealerManager, UnknownDealer, UnknownModelClass
from .subscription import SubscriptionManager

__all__ = ["DealerManager", "UnknownDealer", "UnknownModelClass", "SubscriptionManager"]

"""DataSync: deltas from the web application's database, pushed to the browsers
that subscribed to them (protocol.md §3).

::

    from snorky_sync.services.datasync import DataSyncService, DataSyncBackend
    from snorky_sync.services.datasync.dealers import SimpleDealer

    class PlayersByColor(SimpleDealer):
        name = "playersByColor"
        model = "Player"
        def get_key_for_model(self, data):
            return data["color"]

    datasync = DataSyncService("datasync", [PlayersByColor])          # frontend registry
    datasync_backend = DataSyncBackend("datasync_backend", datasync)  # backend registry
"""
from .backend import DataSyncBackend
from .dealers import BadQuery, BroadcastDealer, Dealer, FilterDealer, SimpleDealer
from .service import DataSyncService
from .subscriptions import Subscription, SubscriptionItem, SubscriptionState

__all__ = [
    "DataSyncService", "DataSyncBackend", "Dealer", "BroadcastDealer",
    "SimpleDealer", "FilterDealer", "BadQuery", "Subscription", "SubscriptionItem",
    "SubscriptionState",
]

"""Dealers the cluster tests plug into the default app (SNORKY_DATASYNC_DEALERS)."""
from snorky_sync.services.datasync import BroadcastDealer, SimpleDealer


class TodosByList(SimpleDealer):
    name = "todosByList"
    model = "Todo"

    def get_key_for_model(self, data):
        return data["list"]


class AllTodos(BroadcastDealer):
    name = "allTodos"
    model = "Todo"


DEALERS = [TodosByList, AllTodos]

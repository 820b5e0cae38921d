"""The DataSync dealers the test servers share: Todo items (``{"id", "list", ...}``)
by list, all of them, and by filter.  Servers in subprocesses import them as
``tests.support.dealers`` (tests/integration/testapp.py, tests/docs'
js_snippets_server.py; SNORKY_DATASYNC_DEALERS=tests.support.dealers:TODO_DEALERS for
the default app in tests/cluster)."""
from snorky_sync.services.datasync import BroadcastDealer, FilterDealer, SimpleDealer


class TodosByList(SimpleDealer):
    name = "todosByList"
    model = "Todo"

    def get_key_for_model(self, data):
        return data["list"]


class AllTodos(BroadcastDealer):
    name = "allTodos"
    model = "Todo"


class TodosFilter(FilterDealer):
    name = "todosFilter"
    model = "Todo"


TODO_DEALERS = [TodosByList, AllTodos]

import pytest

from support.servers import WORKER_CLASSES, serving
from support.wsclient import SnorkyTestClient

MODES = list(WORKER_CLASSES)


@pytest.fixture(scope="module", params=MODES)
def server(request):
    """The test app under each server kind: embedded, gunicorn gevent, gunicorn geventwebsocket."""
    env = getattr(request.module, "SERVER_ENV", {})
    yield from serving(request, request.param, "tests.integration.testapp:app", env)


@pytest.fixture
def connect(server):
    """connect() -> a SnorkyTestClient on /ws; all closed at teardown."""
    clients = []

    def _connect(path="/ws", **kwargs):
        c = SnorkyTestClient(server.ws_url + path, **kwargs)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        c.close()

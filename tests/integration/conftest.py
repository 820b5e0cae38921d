import pytest

from support.servers import WORKER_CLASSES, ServerProcess
from support.wsclient import SnorkyTestClient

MODES = list(WORKER_CLASSES)


@pytest.fixture(scope="module", params=MODES)
def server(request):
    """The test app under each server kind: embedded, gunicorn gevent, gunicorn geventwebsocket."""
    env = getattr(request.module, "SERVER_ENV", {})
    srv = ServerProcess(request.param, app="tests.integration.testapp:app", env=env)
    yield srv
    srv.stop()
    if request.session.testsfailed:
        print(f"--- server log ({srv.mode}) ---\n{srv.log()[-4000:]}")


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

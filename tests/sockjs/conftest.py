import pytest

from support.servers import WORKER_CLASSES, ServerProcess


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def sockjs_server(request):
    """tests/sockjs/protocol_server.py under each server kind."""
    srv = ServerProcess(request.param, app="tests.sockjs.protocol_server:app",
                        env={"SOCKJS_DISCONNECT_DELAY": "2"})
    yield srv
    srv.stop()
    if request.session.testsfailed:
        print(f"--- protocol server log ({srv.mode}) ---\n{srv.log()[-3000:]}")

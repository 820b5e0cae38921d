import pytest

from support.servers import WORKER_CLASSES, serving


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def sockjs_server(request):
    """tests/sockjs/protocol_server.py under each server kind."""
    yield from serving(request, request.param, "tests.sockjs.protocol_server:app",
                       {"SOCKJS_DISCONNECT_DELAY": "2"}, what="protocol server", log_tail=3000)

"""snorky_sync.backend: the Python connector web applications use, against a real server."""
import pytest

from snorky_sync.auth import ConnectionTokens
from snorky_sync.backend import HTTPTransport, SnorkyBackend, SnorkyError, SnorkyTransportError
from support.servers import API_KEY, ServerProcess, free_port
from support.wsclient import SnorkyTestClient


@pytest.fixture(scope="module")
def srv():
    s = ServerProcess("embedded", app="tests.integration.testapp:app")
    yield s
    s.stop()


@pytest.fixture
def backend(srv):
    b = SnorkyBackend(HTTPTransport(srv.url + "/backend", API_KEY, timeout=5),
                      token_secret="integration-token-secret-0123456789")
    yield b
    b.transport.close()


def test_call_returns_data_and_reuses_the_connection(backend):
    assert backend.call("calc", "add", a=1, b=2) == 3
    assert backend.call("calc", "add", a=0) == 0
    pool = backend.transport.pool.connection_from_url(backend.transport.url)
    assert pool.num_connections == 1  # keep-alive: both calls on one connection


def test_rpc_errors_raise_snorky_error(backend):
    with pytest.raises(SnorkyError) as exc:
        backend.call("calc", "divide", a=1, b=0)
    assert exc.value.message == "Division by zero"
    with pytest.raises(SnorkyError, match="Invalid params"):
        backend.call("calc", "add", z=1)


def test_publish_helper(srv, backend):
    c = SnorkyTestClient(srv.ws_url + "/ws")
    c.ok("pubsub", "subscribe", {"channel": {"k": 1}})
    backend.publish({"k": 1}, "from python")
    assert c.recv()["message"] == {"type": "message", "channel": {"k": 1}, "message": "from python"}
    c.close()


def test_transport_errors(srv):
    with pytest.raises(SnorkyTransportError) as exc:
        SnorkyBackend(HTTPTransport(srv.url + "/backend", "wrong-key-0123456789")).call("calc", "add", a=1)
    assert exc.value.status == 401
    with pytest.raises(SnorkyTransportError) as exc:
        SnorkyBackend(HTTPTransport(srv.url + "/backend", API_KEY)).call("nope", "x")
    assert exc.value.status == 404
    with pytest.raises(SnorkyTransportError) as exc:  # not the backend: HTML/404
        SnorkyBackend(HTTPTransport(srv.url + "/healthz", API_KEY)).call("calc", "add", a=1)
    with pytest.raises(SnorkyTransportError, match="cannot reach"):
        SnorkyBackend(HTTPTransport(f"http://127.0.0.1:{free_port()}/backend", API_KEY, timeout=2)).call("calc", "add", a=1)


def test_connection_token_helper(srv, backend):
    token = backend.create_connection_token({"user": 7})
    assert ConnectionTokens("integration-token-secret-0123456789").verify(token) == {"user": 7}
    c = SnorkyTestClient(f"{srv.ws_url}/ws-token?token={token}")
    assert c.ok("who", "whoami") == {"user": 7}
    c.close()
    with pytest.raises(RuntimeError):
        SnorkyBackend(backend.transport).create_connection_token(1)

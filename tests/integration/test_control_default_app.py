"""The default app's backend ``control`` service (issue #24 item 2), one
process: ``disconnect`` over ``/backend`` closes the identity's WebSocket and
SockJS sessions (``c[4003,"banned"]`` / ``c[4002,...]``) on every SockJS
transport, and no one else's; under every serving mode.  The same across two
workers: tests/cluster/test_control_disconnect.py."""
from __future__ import annotations

import pytest

from snorky_sync.auth import ConnectionTokens
from support.servers import WORKER_CLASSES, serving
from support.sockjs_client import TRANSPORTS, SockJSClient
from support.wsclient import SnorkyTestClient, close_of

SECRET = "control-default-app-secret-0123456789"


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    yield from serving(request, request.param, "snorky_sync.app:create_app()",
                       {"SNORKY_TOKEN_SECRET": SECRET})


def token(identity):
    return ConnectionTokens(SECRET).create(identity)


def disconnect(srv, **params):
    answer = srv.post_backend("control", {"command": "disconnect", "params": params, "callId": 1})
    assert answer.status_code == 200, answer.text
    return answer.json()["message"]




@pytest.mark.parametrize("transport", TRANSPORTS)
def test_disconnect_closes_websocket_and_sockjs_sessions_of_the_identity(server, transport):
    page = SnorkyTestClient(f"{server.ws_url}/ws?token={token('u42')}")
    session = SockJSClient(server, "/sockjs", transport, query=f"token={token('u42')}")
    bystander = SnorkyTestClient(f"{server.ws_url}/ws?token={token('u7')}")
    other = SockJSClient(server, "/sockjs", transport, query=f"token={token('u7')}")
    try:
        page.ok("pubsub", "subscribe", {"channel": "c"})  # all four are tracked
        assert session.ok("pubsub", "subscribe", {"channel": "c"}) is None
        assert other.ok("pubsub", "subscribe", {"channel": "c"}) is None
        answer = disconnect(server, identity="u42", reconnect=False, reason="banned")
        assert answer == {"type": "response", "callId": 1, "data": {"closed": 2}}
        assert close_of(page.ws) == (4003, "banned")
        assert session.close_frame() == 'c[4003,"banned"]'
        assert bystander.ok("pubsub", "subscribe", {"channel": "c"}) is None
        assert other.ok("pubsub", "unsubscribe", {"channel": "c"}) is None
        # reconnect allowed: 4002 and the default reason
        assert disconnect(server, identity="u7")["data"] == {"closed": 2}
        assert close_of(bystander.ws) == (4002, "Disconnected")
        assert other.close_frame() == 'c[4002,"Disconnected"]'
    finally:
        for c in (page, session, bystander, other):
            c.close()


def test_bad_params_answer_errors(server):
    assert disconnect(server, identity=None)["message"] == "Invalid identity"
    assert disconnect(server, identity="u", reason="x" * 124)["message"] == "Reason too long"
    assert disconnect(server, identity="nobody")["data"] == {"closed": 0}


def test_info_lists_this_process(server):
    page = SnorkyTestClient(f"{server.ws_url}/ws?token={token('u9')}")
    try:
        page.ok("pubsub", "subscribe", {"channel": "c"})
        answer = server.post_backend("control", {"command": "info", "params": {}}).json()["message"]
        (here,) = answer["data"]["processes"]
        assert here["origin"] is None  # no SNORKY_REDIS_URL: this process only
        assert here["connections"] >= 1 and here["identities"] >= 1
    finally:
        page.close()


def test_the_connector_disconnects_and_lists(server):
    """SnorkyBackend.disconnect / info over HTTP, as a web app calls them."""
    from snorky_sync.backend import HTTPTransport, SnorkyBackend
    from support.servers import API_KEY

    backend = SnorkyBackend(HTTPTransport(f"{server.url}/backend", API_KEY))
    page = SnorkyTestClient(f"{server.ws_url}/ws?token={token('u51')}")
    try:
        page.ok("pubsub", "subscribe", {"channel": "c"})
        assert any(p["connections"] >= 1 for p in backend.info())
        assert backend.disconnect("u51", reconnect=False, reason="bye") == 1
        assert close_of(page.ws) == (4003, "bye")
        assert backend.disconnect("u51") == 0
    finally:
        page.close()


def test_server_side_subscribe_unsubscribe_and_channels(server):
    """control.subscribe/unsubscribe/channels over /backend (the frames) and
    the connector: the page is told, receives the channel's publishes, stops
    after unsubscribe; a personal channel of others is refused."""
    from snorky_sync.backend import HTTPTransport, SnorkyBackend
    from support.servers import API_KEY

    backend = SnorkyBackend(HTTPTransport(f"{server.url}/backend", API_KEY))
    page = SnorkyTestClient(f"{server.ws_url}/ws?token={token('u61')}")
    try:
        page.ok("pubsub", "subscribe", {"channel": "own-61"})
        answer = server.post_backend("control", {"command": "subscribe", "callId": 7, "params": {
            "identity": "u61", "service": "pubsub", "channel": "alerts-61"}}).json()["message"]
        assert answer == {"type": "response", "callId": 7,
                          "data": {"subscribed": 1, "refused": 0, "processes": 1}}
        assert page.next_notification() == {"service": "pubsub", "message": {
            "type": "subscribed", "channel": "alerts-61"}}
        backend.publish("alerts-61", "hello")
        assert page.next_message("alerts-61") == "hello"
        listed = {c["channel"]: c["subscribers"] for c in backend.channels()}
        assert listed["alerts-61"] == 1 and listed["own-61"] == 1
        # personal channel of others: refused, nothing sent
        assert backend.subscribe("u61", "dialog#alice,bob") == {
            "subscribed": 0, "refused": 1, "processes": 1}
        assert backend.unsubscribe("u61", "alerts-61") == {"unsubscribed": 1, "processes": 1}
        assert page.next_notification() == {"service": "pubsub", "message": {
            "type": "unsubscribed", "channel": "alerts-61"}}
        backend.publish("alerts-61", "gone")
        backend.publish("own-61", "marker")
        assert page.next_message() == "marker"  # nothing of alerts-61 before it
        assert "alerts-61" not in {c["channel"] for c in backend.channels()}
        unknown = server.post_backend("control", {"command": "channels", "callId": 8,
                                                  "params": {"service": "nope"}}).json()["message"]
        assert unknown == {"type": "error", "callId": 8, "message": "Unknown service"}
    finally:
        page.close()

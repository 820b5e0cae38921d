"""Quiet connections are parked (no greenlet) and resume where they were, under
every server kind: the inspect service reports how many connections have a
reading greenlet (its own asking connection is always one of them)."""

import pytest

from support.rawws import Raw, call, frame
from support.servers import WORKER_CLASSES, ServerProcess
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    srv = ServerProcess(request.param, app="tests.integration.testapp:app", env={"SNORKY_RATE_LIMIT": "0"})
    yield srv
    srv.stop()


def reading(inspector) -> int:
    return inspector.ok("inspect", "state")["reading"]


def wait_until_parked(inspector, timeout=15.0) -> None:
    """Until only the inspector itself has a reading greenlet (a state read by asking)."""
    wait_for(lambda: reading(inspector) <= 1, timeout, "no connection but the inspector's reading")


def test_quiet_connections_are_parked_and_answer_when_they_talk(server):
    inspector = SnorkyTestClient(server.ws_url + "/ws")
    clients = [SnorkyTestClient(server.ws_url + "/ws") for _ in range(20)]
    try:
        wait_until_parked(inspector)
        for i, c in enumerate(clients):
            assert c.ok("calc", "add", {"a": i, "b": 1}) == i + 1
        assert reading(inspector) > 1  # they talked: awake until a parking pass finds them quiet
        wait_until_parked(inspector)
        for i, c in enumerate(clients):  # and again, from parked
            assert c.ok("calc", "add", {"a": i, "b": 2}) == i + 2
    finally:
        for c in clients + [inspector]:
            c.close()


def test_a_parked_subscriber_gets_messages_and_its_close_is_noticed(server):
    inspector = SnorkyTestClient(server.ws_url + "/ws")
    sub = SnorkyTestClient(server.ws_url + "/ws")
    pub = SnorkyTestClient(server.ws_url + "/ws")
    try:
        before = inspector.ok("inspect", "state")["subscriptions"]
        sub.ok("pubsub", "subscribe", {"channel": "parked"})
        wait_until_parked(inspector)
        pub.ok("pubsub", "publish", {"channel": "parked", "message": "to a parked reader"})
        msg = sub.next_notification()
        assert msg["message"] == {"type": "message", "channel": "parked", "message": "to a parked reader"}
        wait_until_parked(inspector)
        sub.close()  # the parked reader wakes for the end of the stream and cleans up
        wait_for(lambda: inspector.ok("inspect", "state")["subscriptions"] == before, 10,
                 "the closed subscriber's subscription dropped")
    finally:
        for c in (sub, pub, inspector):
            c.close()


@pytest.mark.parametrize("split", ["half a frame", "first fragment"])
def test_a_message_cut_by_parking_is_whole_when_it_resumes(server, split):
    inspector = SnorkyTestClient(server.ws_url + "/ws")
    c = Raw(server.port)
    try:
        payload = call(7, 41, pad=200)
        if split == "half a frame":
            whole = frame(0x1, payload)
            first, rest = whole[:len(whole) // 2], whole[len(whole) // 2:]
        else:
            first = frame(0x1, payload[:30], fin=False)
            rest = frame(0x0, payload[30:])
        c.s.sendall(first)
        wait_until_parked(inspector)
        c.s.sendall(rest)
        assert c.replies(1) == [{"type": "response", "callId": 7, "data": 42}]
    finally:
        c.s.close()
        inspector.close()

"""The flusher coalesces streams of broadcasts (snorky_sync.client.coalesce),
on real sockets: after a flush that wrote broadcasts to many connections the
next flush waits, so the next bursts go out in one send per connection;
replies and single sends are never held back."""
import socket

import gevent
import gevent.socket
import pytest

from snorky_sync import client as client_mod
from snorky_sync.client import Client
from snorky_sync.metrics import counters
from snorky_sync.services.base import Service

CONNECTIONS = 40


def fresh_flusher() -> None:
    """No flusher left waiting from an earlier test (the next send starts one)."""
    if client_mod._flusher is not None:
        client_mod._flusher.kill()
        client_mod._flusher = None
    client_mod._fanned = 0


@pytest.fixture
def clients():
    fresh_flusher()
    saved = dict(client_mod.coalesce)
    client_mod.coalesce.update(sends=32, delay=0.5)  # long enough that nothing else can explain a merge
    pairs = [socket.socketpair() for _ in range(CONNECTIONS)]
    ours = [Client(gevent.socket.socket(fileno=a.detach())) for a, _ in pairs]
    yield ours, [b for _, b in pairs]
    fresh_flusher()
    client_mod.coalesce.clear()
    client_mod.coalesce.update(saved)
    for c in ours:
        c.mark_closed()
        c._sock.close()
    for _, b in pairs:
        b.close()


def writes_after(action) -> int:
    before = counters["socket_writes"]
    action()
    gevent.idle()  # the flusher runs once everything runnable has run
    return counters["socket_writes"] - before


def wait_for_writes(before: int, want: int, timeout: float = 5.0) -> None:
    with gevent.Timeout(timeout, AssertionError(f"expected {want} writes")):
        while counters["socket_writes"] - before < want:
            gevent.sleep(0.01)  # a polling interval for the flusher's own timer


def test_bursts_after_a_large_broadcast_share_one_send_per_connection(clients):
    ours, peers = clients
    assert writes_after(lambda: Service.broadcast_frame(ours, b"\x81\x01a")) == CONNECTIONS
    before = counters["socket_writes"]
    Service.broadcast_frame(ours, b"\x81\x01b")  # two more bursts while the flusher waits
    gevent.idle()
    Service.broadcast_frame(ours, b"\x81\x01c")
    gevent.idle()
    assert counters["socket_writes"] == before  # held back...
    wait_for_writes(before, CONNECTIONS)  # ...then one send each for both
    assert counters["socket_writes"] - before == CONNECTIONS
    for peer in peers:
        assert peer.recv(64) == b"\x81\x01a\x81\x01b\x81\x01c"


def test_single_sends_to_as_many_connections_are_not_held_back(clients):
    ours, _ = clients
    for frame in (b"\x81\x01x", b"\x81\x01y"):
        assert writes_after(lambda frame=frame: [c.send_frame(frame) for c in ours]) == CONNECTIONS


def test_a_small_broadcast_is_not_held_back(clients):
    ours, _ = clients
    few = ours[:8]
    for frame in (b"\x81\x01x", b"\x81\x01y"):
        assert writes_after(lambda frame=frame: Service.broadcast_frame(few, frame)) == len(few)

"""The flusher coalesces streams of broadcasts (snorky_sync.flusher.Flusher),
on real sockets: after a flush that wrote broadcasts to many connections the
next flush waits, so the next bursts go out in one send per connection;
replies and single sends are never held back."""
import socket

import gevent
import gevent.socket
import pytest

from snorky_sync.client import Client
from snorky_sync.flusher import Flusher
from snorky_sync.metrics import counters
from snorky_sync.services.base import Service

CONNECTIONS = 40


@pytest.fixture
def clients():
    # a flusher of the test's own: coalescing waits long enough that nothing else
    # can explain a merge, and no earlier test's state is in it
    flusher = Flusher(coalesce_sends=32, coalesce_delay=0.5)
    pairs = [socket.socketpair() for _ in range(CONNECTIONS)]
    ours = [Client(gevent.socket.socket(fileno=a.detach()), flusher=flusher) for a, _ in pairs]
    yield ours, [b for _, b in pairs]
    flusher.stop()
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

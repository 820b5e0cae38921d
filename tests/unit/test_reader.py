"""The connection reader (snorky_sync.endpoints.reader) on real socketpairs:
parked until input, a greenlet while talking, the end of the connection
reported exactly once however the greenlet stops."""
import socket

import gevent
import gevent.queue
import gevent.socket
import pytest

from snorky_sync.client import Client
from snorky_sync.endpoints import reader as reader_mod
from snorky_sync.endpoints.reader import Reader
from support.rawws import frame


@pytest.fixture
def conn():
    ours, theirs = socket.socketpair()
    sock = gevent.socket.socket(fileno=ours.detach())
    got, ended = gevent.queue.Queue(), gevent.queue.Queue()  # what process() and on_end() were given
    client = Client(sock)
    r = Reader(client, sock, lambda c, payload: got.put(bytes(payload)), ended.put, max_size=1 << 20)
    yield r, theirs, got, ended
    client.mark_closed()
    theirs.close()
    sock.close()


def wait_until(predicate, timeout=5.0):
    """For the reader's own state (waiting, parked), which no event announces."""
    with gevent.Timeout(timeout, AssertionError("timed out")):
        while not predicate():
            gevent.sleep(0.001)  # yield to the hub: the reader runs in its own greenlet


def test_parked_until_input_then_read_in_a_greenlet(conn):
    r, theirs, got, ended = conn
    r.park()
    assert r.greenlet is None
    theirs.sendall(frame(0x1, b'"hello"'))
    assert got.get(timeout=5) == b'"hello"'
    assert r.greenlet is not None and ended.empty()
    wait_until(lambda: r.waiting)  # waits for more in its greenlet, not parked at once
    assert r in r.parker.awake


def test_a_killed_reader_still_ends_the_connection_once(conn):
    r, theirs, got, ended = conn
    r.park()
    theirs.sendall(frame(0x1, b"1"))
    wait_until(lambda: r.waiting)
    r.greenlet.kill()  # GreenletExit in the middle of its wait
    assert ended.get(timeout=5) is r and ended.empty()
    assert r.greenlet is None and r not in r.parker.awake


def test_thrown_park_parks_without_ending(conn):
    r, theirs, got, ended = conn
    r.park()
    theirs.sendall(frame(0x1, b"1"))
    wait_until(lambda: r.waiting)
    gevent.get_hub().loop.run_callback(reader_mod._park_if_waiting, r)
    wait_until(lambda: r.greenlet is None)
    assert ended.empty() and r not in r.parker.awake
    theirs.sendall(frame(0x1, b"2"))  # and it resumes
    assert [got.get(timeout=5), got.get(timeout=5)] == [b"1", b"2"]
    theirs.close()  # the end of the stream ends it, once
    assert ended.get(timeout=5) is r
    gevent.idle()
    assert ended.empty()

"""The connection reader (snorky_sync.endpoints.reader) on real socketpairs:
parked until input, a greenlet while talking, the end of the connection
reported exactly once however the greenlet stops."""
import os
import socket

import gevent
import gevent.socket
import pytest

from snorky_sync.client import Client
from snorky_sync.endpoints import reader as reader_mod
from snorky_sync.endpoints.reader import Reader


def masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    return bytes((0x81, 0x80 | len(payload))) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.fixture
def conn():
    ours, theirs = socket.socketpair()
    sock = gevent.socket.socket(fileno=ours.detach())
    got, ended = [], []
    client = Client(sock)
    r = Reader(client, sock, lambda c, payload: got.append(bytes(payload)), ended.append, max_size=1 << 20)
    yield r, theirs, got, ended
    client.mark_closed()
    theirs.close()
    sock.close()


def wait_until(predicate, timeout=5.0):
    with gevent.Timeout(timeout, AssertionError("timed out")):
        while not predicate():
            gevent.sleep(0.001)  # yield to the hub: the reader runs in its own greenlet


def test_parked_until_input_then_read_in_a_greenlet(conn):
    r, theirs, got, ended = conn
    r.park()
    assert r.greenlet is None
    theirs.sendall(masked(b'"hello"'))
    wait_until(lambda: got)
    assert got == [b'"hello"'] and r.greenlet is not None and not ended
    wait_until(lambda: r.waiting)  # waits for more in its greenlet, not parked at once
    assert r in reader_mod._awake


def test_a_killed_reader_still_ends_the_connection_once(conn):
    r, theirs, got, ended = conn
    r.park()
    theirs.sendall(masked(b"1"))
    wait_until(lambda: r.waiting)
    r.greenlet.kill()  # GreenletExit in the middle of its wait
    assert ended == [r] and r.greenlet is None and r not in reader_mod._awake


def test_thrown_park_parks_without_ending(conn):
    r, theirs, got, ended = conn
    r.park()
    theirs.sendall(masked(b"1"))
    wait_until(lambda: r.waiting)
    gevent.get_hub().loop.run_callback(reader_mod._park_if_waiting, r)
    wait_until(lambda: r.greenlet is None)
    assert not ended and r not in reader_mod._awake
    theirs.sendall(masked(b"2"))  # and it resumes
    wait_until(lambda: len(got) == 2)
    theirs.close()  # the end of the stream ends it, once
    wait_until(lambda: ended)
    assert ended == [r]

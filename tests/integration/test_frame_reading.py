"""How the endpoint reads frames off the socket, byte level, under every server kind:
several frames per read, frames cut across reads, control frames and fragments
in between (the fast path for plain data frames hands everything else to websockets)."""
import pytest

from support.rawws import Raw, call, frame
from support.servers import WORKER_CLASSES, ServerProcess


@pytest.fixture(scope="module", params=list(WORKER_CLASSES))
def server(request):
    srv = ServerProcess(request.param, app="tests.integration.testapp:app", env={"SNORKY_RATE_LIMIT": "0"})
    yield srv
    srv.stop()


def test_frames_of_every_kind_in_one_write_are_answered_in_order(server):
    c = Raw(server.port)
    first, second = call(2, 20), call(3, 30)
    c.s.sendall(frame(0x1, call(1, 10)) + frame(0x9, b"are you there")
                + frame(0x1, call(2, 20, pad=300))          # a 16-bit length
                + frame(0x1, first[:7], fin=False) + frame(0x0, first[7:20], fin=False)
                + frame(0x0, first[20:])                    # a fragmented call (callId 2 again)
                + frame(0x2, second)                        # binary
                + frame(0x1, call(4, 40)))
    got = c.replies(6)
    assert got.count(("pong", b"are you there")) == 1  # pongs go after the read's replies
    answers = [m for m in got if m != ("pong", b"are you there")]
    assert [m["callId"] for m in answers] == [1, 2, 2, 3, 4]
    assert [m["data"] for m in answers] == [11, 21, 21, 31, 41]


def test_a_stream_written_one_byte_at_a_time(server):
    c = Raw(server.port)
    stream = b"".join(frame(0x1, call(i, i, pad=150 * (i % 2))) for i in range(1, 5))
    for i in range(len(stream)):
        c.s.send(stream[i:i + 1])
    assert [m["data"] for m in c.replies(4)] == [2, 3, 4, 5]


@pytest.mark.parametrize("bad, code", [
    (bytes((0x81, 0x05)) + b"hello", 1002),            # unmasked client frame
    (frame(0x1, b"{}")[:0] + bytes((0xC1, 0x82)) + b"\x00\x00\x00\x00{}", 1002),  # RSV1 without an extension
    (frame(0x0, b"stray continuation"), 1002),
], ids=["unmasked", "rsv1", "stray-continuation"])  # (the same on every xdist worker: frames carry random masks)
def test_protocol_errors_after_good_frames_close_the_connection(server, bad, code):
    c = Raw(server.port)
    c.s.sendall(frame(0x1, call(1, 1)) + bad)
    assert c.replies(1)[0]["data"] == 2
    op, payload = c.read_frame()
    assert op == 0x8 and int.from_bytes(payload[:2], "big") == code

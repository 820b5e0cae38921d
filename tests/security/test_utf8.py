"""Invalid UTF-8 in a text message closes the connection with 1007 (RFC 6455 §8.1).

Issue #21 item 17: a text frame that is not UTF-8 was handed to the registry
(logged as invalid JSON) and the connection stayed open.  Single frames of
every length encoding (7-bit, 16-bit, 64-bit: the fast path takes the first
two, websockets the last) and fragmented messages (the invalid bytes in the
first fragment, in a continuation, or a character cut between fragments,
which is valid) are sent on /ws under every serving mode.  A binary message
has no UTF-8 requirement: it is dropped as invalid JSON and the connection
stays.
"""
from __future__ import annotations

import json

import pytest

from support.rawws import Raw, frame

# 64-bit lengths need messages over 64 KiB: raise the limit for this module
SERVER_ENV = {"SNORKY_MAX_FRAME_SIZE": str(256 * 1024)}

INVALID = b"\xc3\x28"  # a lead byte followed by a non-continuation byte


def rpc(call_id: int, pad: str = "") -> bytes:
    return json.dumps({"service": "pubsub", "message": {"command": "nope", "params": {},
                                                        "callId": call_id}, "pad": pad}).encode()


def bad_text(size: int) -> bytes:
    """A JSON document of ``size`` bytes holding an invalid UTF-8 sequence in a string."""
    head, tail = b'{"service": "pubsub", "message": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail) - len(INVALID)) + INVALID + tail


def close_code(c: Raw) -> int:
    """Skip answers to earlier messages; the close frame's code."""
    while True:
        op, payload = c.read_frame()
        if op == 0x8:
            return int.from_bytes(payload[:2], "big")


def assert_answered(c: Raw, call_id: int) -> None:
    op, payload = c.read_frame()
    assert op == 0x1, (op, payload)
    assert json.loads(payload)["message"]["callId"] == call_id


@pytest.mark.parametrize("size", [60, 300, 70 * 1024], ids=["7-bit", "16-bit", "64-bit"])
def test_invalid_utf8_text_frame_closes_with_1007(default_server, size):
    c = Raw(default_server.port)
    c.s.sendall(frame(0x1, rpc(1)) + frame(0x1, bad_text(size)) + frame(0x1, rpc(2)))
    assert_answered(c, 1)
    assert close_code(c) == 1007  # and the frame after it is not answered


@pytest.mark.parametrize("where", ["first", "continuation", "last"])
def test_invalid_utf8_in_a_fragmented_message_closes_with_1007(default_server, where):
    c = Raw(default_server.port)
    parts = [b'{"service": "pubsub", ', b'"message": "abc', b'def"}']
    i = ["first", "continuation", "last"].index(where)
    parts[i] = parts[i][:-1] + INVALID + parts[i][-1:]
    c.s.sendall(frame(0x1, parts[0], fin=False) + frame(0x0, parts[1], fin=False)
                + frame(0x0, parts[2]))
    assert close_code(c) == 1007


def test_a_character_cut_between_fragments_is_valid(default_server):
    c = Raw(default_server.port)
    text = json.dumps({"service": "pubsub", "message": {"command": "nope", "params": {"x": "é€😀"},
                                                        "callId": 7}}, ensure_ascii=False).encode()
    cut = text.index("€".encode()) + 1  # inside the three bytes of the euro sign
    c.s.sendall(frame(0x1, text[:cut], fin=False) + frame(0x0, text[cut:]))
    assert_answered(c, 7)


@pytest.mark.parametrize("size", [60, 300, 70 * 1024], ids=["7-bit", "16-bit", "64-bit"])
def test_valid_non_ascii_text_is_served(default_server, size):
    c = Raw(default_server.port)
    pad = "é" * ((size - 100) // 2)
    c.s.sendall(frame(0x1, json.dumps({"service": "pubsub", "message": {
        "command": "nope", "params": {"x": pad}, "callId": 3}}, ensure_ascii=False).encode()))
    assert_answered(c, 3)


def test_a_binary_message_has_no_utf8_rule(default_server):
    c = Raw(default_server.port)
    c.s.sendall(frame(0x2, bad_text(300)) + frame(0x1, rpc(4)))
    assert_answered(c, 4)  # the binary one was dropped as invalid JSON; still open

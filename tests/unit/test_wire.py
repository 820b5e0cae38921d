"""wire.py: envelopes, hand-built frames (checked by an independent parser), JSON keys."""
import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from snorky_sync import wire


def parse_as_client(data: bytes):
    """Parse server frames with the websockets client-side protocol."""
    p = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    p.receive_data(data)
    return p.events_received()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_text_is_a_valid_unmasked_text_frame(size):
    payload = b"x" * size
    frame = wire.frame_text(payload)
    [parsed] = parse_as_client(frame)
    assert parsed.opcode is Opcode.TEXT and parsed.fin
    assert parsed.data == payload
    assert frame[1] & 0x80 == 0  # server frames are never masked
    assert wire.frame_payload(frame) == payload


def test_encode_frame_is_envelope_in_a_frame():
    frame = wire.encode_frame("pubsub", {"type": "message", "message": "é"})
    assert wire.frame_payload(frame) == wire.encode_envelope("pubsub", {"type": "message", "message": "é"})
    assert wire.decode(wire.frame_payload(frame)) == {
        "service": "pubsub", "message": {"type": "message", "message": "é"}}
    big = wire.encode_frame("s", "y" * 300)
    [parsed] = parse_as_client(big)
    assert wire.decode(parsed.data)["message"] == "y" * 300


def test_frames_concatenate_into_a_valid_stream():
    frames = [wire.encode_frame("s", i) for i in range(50)]
    parsed = parse_as_client(b"".join(frames))
    assert [wire.decode(f.data)["message"] for f in parsed] == list(range(50))


def test_json_key_compares_by_value():
    assert wire.json_key("a") == "a"
    assert wire.json_key({"a": 1, "b": [1, 2]}) == wire.json_key({"b": [1, 2], "a": 1})
    assert wire.json_key(1) != wire.json_key(True)
    assert wire.json_key("1") != wire.json_key(1)
    assert wire.json_key(None) != wire.json_key("null")
    assert wire.json_key([1]) != wire.json_key([[1]])
    hash(wire.json_key({"x": {"y": [1, {"z": None}]}}))


def test_decode_errors_are_value_errors():
    for bad in (b"{", b"\xff\xfe", b"", b"nul"):
        with pytest.raises(ValueError):
            wire.decode(bad)

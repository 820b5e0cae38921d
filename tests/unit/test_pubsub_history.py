"""PubSub with history (one process): offsets, epochs, recovery, and 0.1's frames without it."""
import pytest

from snorky_sync.services.pubsub import PubSubBackend, PubSubService
from support.fakes import FakeClient, rpc


def publish(svc, channel, message):
    rpc(svc, FakeClient(), "publish", {"channel": channel, "message": message})


def test_without_history_the_frames_are_01s():
    svc, a = PubSubService("pubsub"), FakeClient()
    assert rpc(svc, a, "subscribe", {"channel": "c"}) == {"type": "response", "callId": 1, "data": None}
    publish(svc, "c", "m")
    assert a.pop_messages() == [{"type": "message", "channel": "c", "message": "m"}]
    assert rpc(svc, FakeClient(), "subscribe", {"channel": "c", "since": {"offset": 0, "epoch": "x"}})[
        "message"] == "History not enabled"


def test_offsets_and_epoch_on_every_message():
    svc, a = PubSubService("pubsub", history_size=10), FakeClient()
    first = rpc(svc, a, "subscribe", {"channel": "c"})["data"]
    assert first["offset"] == 0 and isinstance(first["epoch"], str) and len(first["epoch"]) == 16
    for i in range(3):
        publish(svc, "c", i)
    got = a.pop_messages()
    assert got == [{"type": "message", "channel": "c", "message": i, "offset": i + 1, "epoch": first["epoch"]}
                   for i in range(3)]
    late = rpc(svc, FakeClient(), "subscribe", {"channel": "c"})["data"]
    assert late == {"offset": 3, "epoch": first["epoch"]}
    other = rpc(svc, FakeClient(), "subscribe", {"channel": ["another", 1]})["data"]
    assert other["offset"] == 0 and other["epoch"] != first["epoch"]


def test_recovery_replays_the_gap_in_order_then_answers():
    svc, a = PubSubService("pubsub", history_size=10), FakeClient()
    epoch = rpc(svc, a, "subscribe", {"channel": "c"})["data"]["epoch"]
    for i in range(5):
        publish(svc, "c", i)
    svc.client_disconnected(a)               # a saw up to offset 2, then was cut
    b = FakeClient()
    b.frames.clear()
    svc.process_message_from(b, {"command": "subscribe", "callId": 9,
                                 "params": {"channel": "c", "since": {"offset": 2, "epoch": epoch}}})
    got = b.pop_messages()
    assert [m.get("message") for m in got[:-1]] == [2, 3, 4]
    assert [m["offset"] for m in got[:-1]] == [3, 4, 5]
    assert got[-1] == {"type": "response", "callId": 9, "data": {"recovered": True, "offset": 5, "epoch": epoch}}
    publish(svc, "c", "live")
    assert b.pop_messages()[0]["offset"] == 6            # live continues, nothing twice


@pytest.mark.parametrize("make_since", [
    lambda epoch: {"offset": 1, "epoch": "another-epoch"},   # the history was lost meanwhile
    lambda epoch: {"offset": 0},                             # no epoch
    lambda epoch: {"offset": 99, "epoch": epoch},            # from the future
    lambda epoch: {"offset": "1", "epoch": epoch},           # not an offset
    lambda epoch: "garbage",
])
def test_unrecoverable_gaps_replay_nothing(make_since):
    svc = PubSubService("pubsub", history_size=10)
    epoch = rpc(svc, FakeClient(), "subscribe", {"channel": "c"})["data"]["epoch"]
    publish(svc, "c", 1)
    since = make_since(epoch)
    b = FakeClient()
    answer = rpc(svc, b, "subscribe", {"channel": "c", "since": since})
    assert answer["data"] == {"recovered": False, "offset": 1, "epoch": epoch}
    assert b.pop_messages() == []


def test_a_gap_longer_than_the_history_is_not_recoverable():
    svc = PubSubService("pubsub", history_size=3)
    epoch = rpc(svc, FakeClient(), "subscribe", {"channel": "c"})["data"]["epoch"]
    for i in range(6):
        publish(svc, "c", i)
    b = FakeClient()
    assert rpc(svc, b, "subscribe", {"channel": "c", "since": {"offset": 2, "epoch": epoch}})["data"][
        "recovered"] is False
    c = FakeClient()
    svc.process_message_from(c, {"command": "subscribe", "callId": 1,
                                 "params": {"channel": "c", "since": {"offset": 3, "epoch": epoch}}})
    got = c.pop_messages()
    assert [m["offset"] for m in got[:-1]] == [4, 5, 6]              # 4, 5, 6 are held
    assert got[-1]["data"]["recovered"] is True


def test_up_to_date_since_replays_nothing_and_recovers():
    svc = PubSubService("pubsub", history_size=3)
    epoch = rpc(svc, FakeClient(), "subscribe", {"channel": "c"})["data"]["epoch"]
    b = FakeClient()
    assert rpc(svc, b, "subscribe", {"channel": "c", "since": {"offset": 0, "epoch": epoch}})["data"] == {
        "recovered": True, "offset": 0, "epoch": epoch}


def test_the_backend_publishes_with_offsets_too():
    svc = PubSubService("pubsub", history_size=5)
    backend, a = PubSubBackend("pubsub_backend", svc), FakeClient()
    rpc(svc, a, "subscribe", {"channel": "c"})
    rpc(backend, FakeClient(), "publish", {"channel": "c", "message": "from the server"})
    assert a.pop_messages()[0]["offset"] == 1


def test_history_parameters_are_checked():
    with pytest.raises(ValueError, match=r"PubSubService\(history_size=...\) is an integer >= 0, got -1"):
        PubSubService("p", history_size=-1)
    with pytest.raises(ValueError, match=r"PubSubService\(history_ttl=...\) is seconds > 0, got 0"):
        PubSubService("p", history_size=5, history_ttl=0)
    with pytest.raises(TypeError, match=r"PubSubService\(history_ttl=...\) is seconds > 0, got str"):
        PubSubService("p", history_size=5, history_ttl="60")

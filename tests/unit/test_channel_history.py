"""ChannelHistory (snorky_sync/services/history.py) with a distributed store, for
PubSub's subscribe and Chat's join alike: live messages of a recovering client
are held during the history read and only the newer ones sent after it, a
store that cannot be reached answers ``History unavailable``, a client gone
during the read gets ``Not subscribed`` / ``Not joined``.  The store is an
in-memory stand-in for RedisHistory that publishes the way its Lua script
does; with a real Redis: tests/cluster/test_history_cluster.py."""
import pytest

from snorky_sync import ServiceRegistry, wire
from snorky_sync.brokers.base import Broker, BrokerUnavailable, channel_topic
from snorky_sync.brokers.history import LocalHistory
from snorky_sync.brokers.redis_history import RedisHistory
from snorky_sync.metrics import counters
from snorky_sync.services.chat import ChatService
from snorky_sync.services.pubsub import PubSubService
from support.fakes import FakeClient


class SharedHistory(LocalHistory):
    """A distributed store in memory: ``append`` hands the message to this
    process's handler of the channel's topic (as RedisHistory's script
    publishes it, echo included); ``during_read`` runs once inside the next
    read, after its snapshot (what arrives while Redis answers)."""

    distributed = True
    unpack = staticmethod(RedisHistory.unpack)

    def __init__(self, broker, family, size, ttl):
        super().__init__(size, ttl)
        self.broker, self.family = broker, family
        self.down = False
        self.during_read = None

    def append(self, key, head, size=None):
        if self.down:
            raise BrokerUnavailable("down")
        offset, epoch, env = super().append(key, head, size)
        self.publish(key, offset, env)
        return offset, epoch, env

    def publish(self, key, offset, env):
        """(Again:) what Redis sends every process wanting the channel."""
        handler = self.broker.handlers.get(channel_topic(self.family, wire.key_to_bytes(key)))
        if handler is not None:
            handler(wire.pack_routed(key, b"%d " % offset + env))

    def read(self, key):
        if self.down:
            raise BrokerUnavailable("down")
        result = super().read(key)
        hook, self.during_read = self.during_read, None
        if hook is not None:
            hook()
        return result


class SharedBroker(Broker):
    distributed = True

    def publish(self, topic, data):
        pass

    def history_store(self, namespace, family, size, ttl):
        self.store = SharedHistory(self, family, size, ttl)
        return self.store


# service, the command putting a client in channel "c", its params' extra, who speaks
CASES = {
    "pubsub": (lambda: PubSubService("s", history_size=10), "subscribe", "Not subscribed",
               lambda svc, who, body: svc.do_publish("c", body)),
    "chat": (lambda: ChatService("s", history_size=10), "join", "Not joined",
             lambda svc, who, body: svc.process_message_from(
                 who, {"command": "send", "callId": 99, "params": {"channel": "c", "body": body}})),
}


def setup(case):
    make, command, gone, say = CASES[case]
    svc, broker = make(), SharedBroker()
    ServiceRegistry([svc], broker=broker)
    speaker = FakeClient("speaker")
    svc.process_message_from(speaker, {"command": command, "callId": 1, "params": {"channel": "c"}})
    return svc, broker.store, command, gone, (lambda body: say(svc, speaker, body)), speaker


def enter(svc, client, command, params):
    """The frames before the answer (the bodies), and the answer."""
    client.frames.clear()
    svc.process_message_from(client, {"command": command, "callId": 7, "params": params})
    got = client.pop_messages()
    bodies = [m.get("message", m.get("body")) for m in got[:-1] if m["type"] == "message"]
    return bodies, got[-1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_live_messages_during_the_read_are_held_and_only_the_newer_ones_sent(case):
    svc, store, command, _, say, _ = setup(case)
    for i in range(3):
        say(i)                                                     # offsets 1..3
    epoch = store.read("c")[1]
    late = FakeClient("late")

    def meanwhile():                       # Redis answered the read at offset 3, then:
        store.publish("c", 3, store.streams["c"].entries[2][1])   # 3 again (in flight before the read)
        say(3)                                                      # 4, live
        say(4)                                                      # 5, live
    store.during_read = meanwhile
    bodies, answer = enter(svc, late, command, {"channel": "c", "since": {"offset": 1, "epoch": epoch}})
    assert bodies == [1, 2, 3, 4]                  # the replay (2, 3), then the held 4 and 5, once each
    data = answer["data"]
    assert (data["recovered"], data["offset"], data["epoch"]) == (True, 5, epoch)
    store.publish("c", 5, store.streams["c"].entries[4][1])       # 5 again, in flight: not sent
    say(5)                                                          # 6
    assert [m["offset"] for m in late.pop_messages() if m["type"] == "message"] == [6]
    assert svc.history.gate.holding == {} and svc.history.gate.waiting == {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_store_out_of_reach_answers_history_unavailable(case):
    svc, store, command, _, say, _ = setup(case)
    store.down = True
    before = counters[f"{case}_history_unavailable"]
    bodies, answer = enter(svc, FakeClient("late"), command, {"channel": "c"})
    assert (bodies, answer["type"], answer["message"]) == ([], "error", "History unavailable")
    assert counters[f"{case}_history_unavailable"] == before + 1
    assert svc.history.gate.holding == {}
    with pytest.raises(Exception, match="History unavailable"):
        svc.history.append("c", {"type": "message"})


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_subscribe_or_join_whose_history_cannot_be_read_is_undone(case):
    """History unavailable: the client is not left in the channel, and the
    members saw it come and go (Chat's presence) or nothing at all."""
    svc, store, command, gone, _, speaker = setup(case)
    store.down = True
    late = FakeClient("late")
    speaker.frames.clear()
    enter(svc, late, command, {"channel": "c"})
    members = svc.subscribed if case == "pubsub" else svc.joined
    assert late not in members.clients("c")
    leave = "unsubscribe" if case == "pubsub" else "leave"
    assert enter(svc, late, leave, {"channel": "c"})[1]["message"] == gone
    seen = [(m.get("from"), m.get("status")) for m in speaker.pop_messages() if m["type"] == "presence"]
    assert seen in ([], [("late", "joined"), ("late", "left")])
    store.down = False
    assert enter(svc, late, command, {"channel": "c"})[1]["type"] == "response"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_client_gone_during_the_read_is_told_so(case):
    svc, store, command, gone, _, _ = setup(case)
    late = FakeClient("late")
    store.during_read = lambda: svc.client_disconnected(late)
    bodies, answer = enter(svc, late, command, {"channel": "c"})
    assert (answer["type"], answer["message"]) == ("error", gone)
    gate = svc.history.gate
    assert not [k for k, held in gate.holding.items() if late in held]
    assert not [k for k, waiting in gate.waiting.items() if late in waiting]


def missed(store, key, body):
    """A message Redis took while this process's connection was down: kept,
    never heard here."""
    LocalHistory.append(store, key, b'{"service":"s","message":{"type":"message","channel":"c","message":%d'
                        % body)


def test_after_a_reconnect_the_missed_messages_are_delivered_from_the_history_once():
    svc, store, _, _, say, speaker = setup("pubsub")
    say(0)                                                           # offset 1, live
    for body in (1, 2):
        missed(store, "c", body)                                     # 2, 3: lost on the way
    speaker.frames.clear()
    say(3)                                                           # 4: a jump, not delivered
    svc.history.reconnected()                                        # the listener came back
    svc.history.resyncer.join(5)
    say(4)
    got = [(m["offset"], m["message"]) for m in speaker.pop_messages()]
    assert got == [(2, 1), (3, 2), (4, 3), (5, 4)]


def test_a_reconnect_reads_again_only_the_channels_of_the_shard_that_reconnected():
    """Several Redis shards: a shard's reconnect covers its channels only."""
    svc, store, _, _, say, speaker = setup("pubsub")
    say(0)
    missed(store, "c", 1)                                            # 2: lost on the way
    speaker.frames.clear()
    topic = svc.history.members.topic("c")
    svc.history.reconnected(lambda t: t != topic)                    # another shard came back
    assert svc.history.resyncer is None and not svc.history.pending
    svc.history.reconnected(lambda t: t == topic)                    # the channel's shard
    svc.history.resyncer.join(5)
    assert [(m["offset"], m["message"]) for m in speaker.pop_messages()] == [(2, 1)]


def test_a_gap_the_history_cannot_fill_is_a_gap_notification():
    svc, store, _, _, say, speaker = setup("pubsub")                 # history_size 10
    say(0)
    for body in range(1, 13):
        missed(store, "c", body)                                     # 2..13: more than it keeps
    speaker.frames.clear()
    svc.history.reconnected()
    svc.history.resyncer.join(5)
    say(13)
    epoch = store.read("c")[1]
    assert speaker.pop_messages() == [
        {"type": "gap", "channel": "c", "offset": 13, "epoch": epoch},
        {"type": "message", "channel": "c", "message": 13, "offset": 14, "epoch": epoch}]

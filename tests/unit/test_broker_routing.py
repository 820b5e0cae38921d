"""Routing by interest, as the broker interface defines it (no Redis here:
tests/security/test_redis_routing.py runs it between real processes)."""
from snorky_sync import wire
from snorky_sync.brokers.base import Broker, channel_topic


def key(channel) -> bytes:
    return wire.key_to_bytes(wire.json_key(channel))


def test_a_channel_topic_is_bounded_hex_and_distinct_per_channel_and_family():
    names = ["a", "a:", ":a", "sa", "ja", '{"a":1}', {"a": 1}, ["a", 1], "x" * 5000, "\u0000json"]
    topics = {channel_topic("pubsub:p", key(n)) for n in names}
    assert len(topics) == len(names)
    for t in topics:
        family, _, digest = t.rpartition(":")
        assert family == "pubsub:p" and len(digest) == 32 and int(digest, 16) >= 0
    assert channel_topic("pubsub:p", key("a")) == channel_topic("pubsub:p", key("a"))
    assert channel_topic("pubsub:p", key("a")).rpartition(":")[2] != \
        channel_topic("chatmsg:p", key("a")).rpartition(":")[2]
    # a family ending where another begins does not make the same hash either
    assert channel_topic("pubsub:a", key("b")).rpartition(":")[2] != \
        channel_topic("pubsub:", key("ab")).rpartition(":")[2]


def test_want_installs_the_family_handler_until_the_last_unwant():
    broker = Broker()
    got = []
    broker.route("pubsub:p", got.append, echo=True)
    topic = channel_topic("pubsub:p", key("c"))
    broker.want(topic)
    broker.want(topic)  # a second local interest (counted)
    assert broker.handlers[topic] == got.append and topic in broker.echo
    broker.unwant(topic)
    assert topic in broker.handlers
    broker.unwant(topic)
    assert topic not in broker.handlers and topic not in broker.echo and not broker.wanted
    broker.unwant(topic)  # more leaves than joins change nothing
    assert not broker.wanted
    assert broker.confirm(topic)  # in-process: nothing to wait for

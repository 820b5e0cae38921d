"""Messaging replicated between 'processes' in one test (Chat's identity
membership is routed per channel in Redis: tests/cluster/):
an in-memory distributed broker that delivers only when told, so every
interleaving (snapshots, expiry, outages, reclaim conflicts) is deterministic.
The real thing (Redis, processes) is in tests/cluster/."""
import os

import gevent
import pytest

from snorky_sync.brokers.base import Broker, BrokerUnavailable
from snorky_sync.services.messaging import MessagingService
from support.fakes import FakeClient, rpc


class Net:
    """The 'Redis' the fake brokers share: pub/sub queues and claimed keys."""

    def __init__(self):
        self.brokers = []
        self.keys = {}
        self.dead = set()   # origins whose liveness key expired

    def pump(self):
        """Deliver everything queued (and let spawned greenlets run) until quiet."""
        for _ in range(100):
            gevent.sleep(0)
            busy = False
            for b in self.brokers:
                while b.inbox:
                    busy = True
                    topic, data = b.inbox.pop(0)
                    b.handlers[topic](data)
            if not busy:
                return
        raise AssertionError("never quiet")


class FakeBroker(Broker):
    distributed = True
    state = "connected"

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.inbox = []
        net.brokers.append(self)

    def publish(self, topic, data):
        if self.state != "connected":
            return  # lost, as with Redis away
        for b in self.net.brokers:
            if b is not self and b.state == "connected" and topic in b.handlers:
                b.inbox.append((topic, data))

    def claim(self, key):
        if self.state != "connected":
            raise BrokerUnavailable("down")
        token = self.new_claim_token()
        return token if self._take(key, token) else None

    def _take(self, key, token):
        cur = self.net.keys.get(key)
        if cur is None or cur == token or cur[:16] == self.origin.hex() or cur[:16] in self.net.dead:
            self.net.keys[key] = token
            return True
        return False

    def claim_many(self, pairs):
        if self.state != "connected":
            raise BrokerUnavailable("down")
        return [self._take(k, t) for k, t in pairs]

    def release(self, pairs, wait=False):
        for key, token in pairs:
            if self.net.keys.get(key) == token:
                del self.net.keys[key]

    # what RedisBroker does on connection changes
    def go_down(self):
        self.state = "disconnected"
        self.inbox.clear()

    def come_back(self):
        self.state = "connected"
        for listener in self.listeners:
            listener.broker_connected()

    def die(self):
        """SIGKILL: gone without a word; the others expire it."""
        self.state = "dead"
        self.net.brokers.remove(self)
        self.net.dead.add(self.origin.hex())
        for b in self.net.brokers:
            for listener in b.listeners:
                listener.peer_gone(self.origin)


def processes(cls, n=2):
    net = Net()
    services = []
    for _ in range(n):
        svc = cls(cls.__name__.lower())
        svc.use_broker(FakeBroker(net))
        services.append(svc)
    for svc in services:  # startup: every process says hello
        svc.broker.come_back()
    net.pump()
    return net, services


def test_messaging_outage_conflict_one_keeps_the_name_and_others_converge():
    net, (a, b) = processes(MessagingService)
    ca, cb = FakeClient(), FakeClient()
    assert rpc(a, ca, "registerParticipant", {"name": "n"})["type"] == "response"
    assert rpc(b, cb, "registerParticipant", {"name": "n"})["message"] == "Name already registered"  # Redis says no
    net.pump()
    assert rpc(b, cb, "listParticipants")["data"] == ["n"]
    a.broker.go_down(), b.broker.go_down()
    assert rpc(a, ca, "registerParticipant", {"name": "dup"})["type"] == "response"
    assert rpc(b, cb, "registerParticipant", {"name": "dup"})["type"] == "response"
    a.broker.come_back()
    b.broker.come_back()
    net.pump()
    for svc, c in ((a, ca), (b, cb)):
        assert rpc(svc, c, "listParticipants")["data"] == ["dup", "n"]
    holders = [svc for svc, c in ((a, ca), (b, cb)) if "dup" in svc.participants]
    assert len(holders) == 1
    loser, lc = (b, cb) if holders[0] is a else (a, ca)
    assert rpc(loser, lc, "send", {"sender": "dup", "dest": "n", "body": 1})["message"] == "Invalid sender"
    # send across processes and expiry of a dead process's names
    assert rpc(b, cb, "registerParticipant", {"name": "m"})["type"] == "response"
    net.pump()
    rpc(a, ca, "send", {"sender": "n", "dest": "m", "body": "hi"})
    net.pump()
    assert cb.pop_messages()[-1] == {"type": "message", "sender": "n", "dest": "m", "body": "hi"}
    b.broker.die()
    assert rpc(a, ca, "listParticipants")["data"] == (["dup", "n"] if holders[0] is a else ["n"])
    assert rpc(a, FakeClient(), "registerParticipant", {"name": "m"})["type"] == "response"


@pytest.mark.parametrize("cls", [MessagingService])
def test_without_a_distributed_broker_there_is_no_replica(cls):
    from snorky_sync.brokers.local import LocalBroker
    svc = cls("x")
    svc.use_broker(LocalBroker())
    assert svc.replica is None

"""The multi-host testbed (bench/testbed.py) for a test module: 3 hosts (network
namespaces, gunicorn -k gevent -w 2 each) behind a real nginx, 3 redis-server
shards, every host's SNORKY_REDIS_URL naming all three.  Instance 1 (names snorkytb1*, 10.231.1.0/24) unless
SNORKY_TESTBED_INSTANCE says otherwise, so a hand-started testbed (instance 0)
is left alone.  Needs root, iproute2, nginx, redis-server: CI has them."""
import hashlib
import os

import pytest
import redis
import requests

from bench import testbed as tb
from snorky_sync import wire
from snorky_sync.brokers.base import channel_topic
from snorky_sync.brokers.placement import shard_of
from support.waiting import wait_for

INSTANCE = int(os.environ.get("SNORKY_TESTBED_INSTANCE", "1"))
HOSTS = 3
# the testbed's key and secret even when the environment has others
ENV = {"SNORKY_PUBSUB_HISTORY_SIZE": "1000", "SNORKY_LOG_LEVEL": "INFO",
       "SNORKY_API_KEY": tb.API_KEY, "SNORKY_TOKEN_SECRET": tb.TOKEN_SECRET}


@pytest.fixture(scope="module")
def testbed(request):
    state = tb.up(hosts=HOSTS, workers=2, env=ENV, instance=INSTANCE)
    try:
        yield state
    finally:
        if request.session.testsfailed:
            logs = tb.Layout(INSTANCE).state_dir / "logs"
            for f in sorted(logs.glob("*.log")):
                print(f"--- {f.name} ---\n{f.read_text(errors='replace')[-3000:]}")
        removed = tb.down(INSTANCE, quiet=True)
        assert tb.down(INSTANCE, quiet=True) == [], "a second down found something left"
        assert any(r.startswith("netns") for r in removed), removed


def backend(state, command: str, **params) -> dict:
    """A control call through nginx (it reaches whichever host nginx picks)."""
    answer = requests.post(state.url + "/backend", headers={"X-Backend-Key": tb.API_KEY}, timeout=10,
                           json={"service": "control", "message": {"command": command, "params": params,
                                                                   "callId": 1}}).json()["message"]
    assert answer["type"] == "response", answer
    return answer["data"]


def hosts_of(state, identities) -> dict:
    """{identity: the host name of the process holding its connection}, once
    control.connections (asked of every process through nginx) lists each of
    ``identities`` exactly once."""
    wanted = set(identities)

    def listed():
        found: dict = {}
        for proc in backend(state, "connections", limit=1000)["processes"]:
            for client in proc["clients"]:
                if client["identity"] in wanted:
                    found.setdefault(client["identity"], []).append(proc["host"])
        if set(found) == wanted and all(len(v) == 1 for v in found.values()):
            return {k: v[0] for k, v in found.items()}
        return None
    return wait_for(listed, 15, f"control.connections listing {sorted(wanted)} once each")


# PubSub with history (SNORKY_PUBSUB_HISTORY_SIZE): its channels' topic family
FAMILY = "pubhist:pubsub"


def shards(state) -> list[redis.Redis]:
    """A client of each Redis shard, in SNORKY_REDIS_URL's order (the bridge
    address is reachable from the root namespace)."""
    return [redis.Redis.from_url(url) for url in state.broker_url.split(",")]


def wire_channel(channel) -> str:
    """The Redis pub/sub channel carrying PubSub channel ``channel``."""
    return "snorky:" + channel_topic(FAMILY, wire.key_to_bytes(wire.json_key(channel)))


def history_key(channel) -> str:
    return "snorky:hist:pubsub:pubsub:" + hashlib.sha1(wire.key_to_bytes(wire.json_key(channel))).hexdigest()


def channels_per_shard(prefix: str, n: int, count: int) -> list[list[str]]:
    """``n`` channel names placed on each of ``count`` shards: [[shard 0's], ...]."""
    found: list[list[str]] = [[] for _ in range(count)]
    i = 0
    while min(len(v) for v in found) < n:
        name = f"{prefix}-{i}"
        group = found[shard_of(channel_topic(FAMILY, wire.key_to_bytes(wire.json_key(name))), count)]
        if len(group) < n:
            group.append(name)
        i += 1
    return found

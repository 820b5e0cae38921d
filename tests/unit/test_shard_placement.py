"""Placement over several Redis shards (SNORKY_REDIS_URL with a list of
URLs): stable, spread, the same in every process, and moving only what lands
on a new shard (tests/cluster/test_sharded_redis.py runs it against three
real redis-server)."""
import collections
import subprocess
import sys

import pytest

from snorky_sync import wire
from snorky_sync.brokers.base import channel_topic
from snorky_sync.brokers.placement import jump_hash, shard_of, split_urls


def topic(channel, family="pubhist:pubsub"):
    return channel_topic(family, wire.key_to_bytes(wire.json_key(channel)))


def test_jump_hash_gives_the_published_buckets():
    # the vectors of other implementations of Lamping and Veach's algorithm
    assert jump_hash(256, 1024) == 520
    assert jump_hash(10863919174838991, 11) == 6
    assert jump_hash(2016238256797177309, 11) == 3
    assert [jump_hash(k, 1) for k in (0, 1, 2**64 - 1)] == [0, 0, 0]
    with pytest.raises(ValueError):
        jump_hash(1, 0)


def test_placement_is_a_fixed_function_of_the_name():
    # fixed here: a release that placed these elsewhere would hide every
    # history kept by the previous one
    names = [topic("news"), topic("room-1"), topic("dialog#alice,bob"), "snorky:shared:x", "k0"]
    assert [shard_of(n, 3) for n in names] == [1, 1, 0, 0, 0]
    assert all(shard_of(n, 1) == 0 for n in names)


def test_every_process_places_the_same_way():
    """Not Python's hash(): other processes (other PYTHONHASHSEED) agree."""
    names = [topic(f"ch{i}") for i in range(200)]
    here = [shard_of(n, 5) for n in names]
    code = ("import json, sys; from snorky_sync.brokers.placement import shard_of; "
            "print(json.dumps([shard_of(n, 5) for n in json.load(sys.stdin)]))")
    for seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], input=wire.encode(names).decode(),
                             capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert wire.decode(out.stdout.encode()) == here


def test_channels_spread_evenly():
    n = 30000
    counts = collections.Counter(shard_of(topic(f"channel-{i}"), 3) for i in range(n))
    assert set(counts) == {0, 1, 2}
    for count in counts.values():
        assert abs(count - n / 3) < 0.03 * n, counts


def test_adding_a_shard_moves_only_what_lands_on_it():
    n = 20000
    names = [topic(f"channel-{i}") for i in range(n)]
    before = [shard_of(t, 3) for t in names]
    after = [shard_of(t, 4) for t in names]
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert all(b == 3 for _, b in moved)            # to the new shard, never between old ones
    assert abs(len(moved) - n / 4) < 0.03 * n      # about 1/4 of them
    # where mod N would have moved about 3/4


def test_split_urls_keeps_sentinel_urls_whole():
    value = ("redis://:pw@a:6379/0, redis+sentinel://s1:26379,s2:26379/mymaster/0,"
             "rediss://b:6380/1,unix:///tmp/r.sock?db=2")
    assert split_urls(value) == ["redis://:pw@a:6379/0", "redis+sentinel://s1:26379,s2:26379/mymaster/0",
                                 "rediss://b:6380/1", "unix:///tmp/r.sock?db=2"]
    assert split_urls("redis+sentinel://s1:26379,s2:26379/m") == ["redis+sentinel://s1:26379,s2:26379/m"]
    with pytest.raises(ValueError, match="not a redis"):
        split_urls("redis://a:1/0,http://b:2/0")
    with pytest.raises(ValueError, match="twice"):
        split_urls("redis://a:1/0,redis://a:1/0")

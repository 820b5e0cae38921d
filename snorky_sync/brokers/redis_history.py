"""The Redis history store: channel histories shared by every process.

Per channel, a list of its last ``size`` messages and a hash with its epoch
and offset counter (``snorky:hist:<namespace>:<sha1 of the channel key>``
and ``...:m``), both expiring ``ttl`` after the last message; a hash found
missing (first message, Redis restarted empty or flushed, expired) starts a
new epoch.  One Lua script assigns the offset, stores the message and
publishes it as :meth:`RedisBroker.publish <.redis.RedisBroker.publish>`
would on the channel's topic of the routed ``family`` (with several shards,
the keys are on that topic's shard: :mod:`.sharded`)
(:func:`~.base.channel_topic`), so every process that wants the channel —
this one included: the family is routed with echo — receives its messages
in offset order.  See :mod:`.history` for the store interface.

A publish with an ``idempotencyKey`` (:mod:`snorky_sync.services.idempotency`)
hands its claim to the append (:data:`~.history.idempotent_append`): the
same script records the publish's answer under the claim's key (placed with
the channel, on its shard), or appends nothing and returns the answer the
key already holds, so no kill between publishing and recording can make a
retry publish again.
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .. import wire
from .base import channel_topic
from .history import AlreadyAnswered, Entries, finish_envelope, idempotent_append, new_epoch
from .redis import PREFIX

if TYPE_CHECKING:
    from .sharded import RedisLike

__all__ = ["RedisHistory"]

# KEYS: entries list, meta hash; ARGV[1]: epoch candidate.  The channel's epoch:
# with no meta hash (first message, Redis restarted empty or flushed, expired)
# the candidate starts a new one, from offset 0, with no entries.
_EPOCH = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
"""

# ARGV: epoch candidate, size, ttl ms, envelope head, redis channel, payload prefix,
# the publish command (PUBLISH; SPUBLISH in a Redis Cluster: the channel's hash
# tag is the keys'); with an idempotency claim, KEYS[3]: its key, ARGV[8]: "p"
# (the answer is {"offset", "epoch"}) or "n" (null), ARGV[9]: window ms.  A claim already
# answered: {-1, answer}, nothing appended; else the answer recorded with the message.
_APPEND = """
if KEYS[3] then
  local answered = redis.call('GET', KEYS[3])
  if answered and string.sub(answered, 1, 1) == 'a' then return {-1, answered} end
end
""" + _EPOCH + """end
local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
local env = ARGV[4] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}}'
redis.call('RPUSH', KEYS[1], offset .. ' ' .. env)
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call(ARGV[7], ARGV[5], ARGV[6] .. offset .. ' ' .. env)
if KEYS[3] then
  local answer = 'anull'
  if ARGV[8] == 'p' then answer = 'a{"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}' end
  redis.call('SET', KEYS[3], answer, 'PX', ARGV[9])
end
return {offset, epoch}
"""

# ARGV: epoch candidate, ttl ms
_READ = _EPOCH + """  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local offset = redis.call('HGET', KEYS[2], 'o')
return {epoch, offset, redis.call('LRANGE', KEYS[1], 0, -1)}
"""

# ARGV: the epoch found to have lost writes, a new epoch, ttl ms: unless
# another process renewed it already, the channel starts over in a new epoch
_RENEW = """
if redis.call('HGET', KEYS[2], 'e') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', ARGV[2], 'o', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


class RedisHistory:
    """Streams in Redis (a :class:`~.history.HistoryStore`), made by
    :meth:`RedisBroker.history_store <.redis.RedisBroker.history_store>`.
    ``append`` and ``read`` raise :class:`~.base.BrokerUnavailable` when Redis
    cannot be reached."""

    distributed = True

    def __init__(self, broker: RedisLike, namespace: str, family: str, size: int,
                 ttl: float) -> None:
        self.broker = broker
        self.size = size
        self.ttl = ttl
        self.ttl_ms = max(1, int(ttl * 1000))
        self.namespace = f"{PREFIX}hist:{namespace}:"
        self.family = family
        self._append = broker.script(_APPEND)
        self._read = broker.script(_READ)
        self._renew = broker.script(_RENEW)

    def _keys(self, key_bytes: bytes, topic: str) -> list[str]:
        digest = hashlib.sha1(key_bytes).hexdigest()
        name = self.broker.tagged_key(self.namespace + digest, topic)  # a Redis Cluster: the topic's slot
        return [name, name + ":m"]

    def append(self, key: Hashable, head: bytes, size: int | None = None) -> tuple[int, str, bytes]:
        """Append and publish (to every process, in offset order), keeping
        the last ``size`` (None: the store's).

        What is published is ``wire.pack_routed(key, b"<offset> " + envelope)``,
        as the broker publishes on the channel's topic (see :meth:`unpack`)."""
        routed = wire.pack_routed(key, b"")
        kb = routed[4:]
        topic = channel_topic(self.family, kb)  # the keys live on the topic's shard
        channel, payload = self.broker.wire_publish(topic, routed)
        keys = self._keys(kb, topic)
        args: list[Any] = [new_epoch(), size or self.size, self.ttl_ms, head, channel, payload,
                           self.broker.publish_command]
        claim = idempotent_append.get()
        if claim is not None and (claim.recorded or claim.place != topic):
            claim = None  # another channel's, or recorded by an append already
        if claim is not None:  # on this shard: it was placed by the channel's topic
            keys.append(claim.key)
            args += [b"p" if claim.offset_answer else b"n", claim.window_ms]
        offset, epoch = self._append(keys, args, place=topic)
        if claim is not None:
            claim.recorded = True
        if int(offset) == -1:
            raise AlreadyAnswered(bytes(epoch))
        offset, epoch = int(offset), _text(epoch)
        return offset, epoch, finish_envelope(head, offset, epoch)

    def place(self, key: Hashable) -> str:
        """The name ``key``'s keys are placed by (its topic): an idempotency
        claim placed by it is on the channel's shard, where :meth:`append`
        can record its answer."""
        return channel_topic(self.family, wire.key_to_bytes(key))

    def read(self, key: Hashable) -> tuple[int, str, Entries]:
        kb = wire.key_to_bytes(key)
        topic = channel_topic(self.family, kb)
        epoch, offset, raw = self._read(self._keys(kb, topic), [new_epoch(), self.ttl_ms], place=topic)
        return int(offset), _text(epoch), [_numbered(item) for item in raw]

    def renew(self, key: Hashable, epoch: str) -> bool:
        """Start ``key`` over in a new epoch, if it is still in ``epoch``
        (found to have lost writes: a failover to a replica that had not
        got them, so it would give their offsets to other messages)."""
        kb = wire.key_to_bytes(key)
        topic = channel_topic(self.family, kb)
        return bool(self._renew(self._keys(kb, topic), [epoch, new_epoch(), self.ttl_ms], place=topic))

    @staticmethod
    def unpack(data: bytes) -> tuple[Any, int, bytes]:
        """A message :meth:`append` published: ``(channel key, offset, envelope)``."""
        key, rest = wire.unpack_routed(data)
        offset, env = _numbered(rest)
        return key, offset, env


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _numbered(item: bytes) -> tuple[int, bytes]:
    """``b"<offset> <envelope>"`` (how the scripts store and publish) -> (offset, envelope)."""
    num, _, env = bytes(item).partition(b" ")
    return int(num), env

"""Detached DataSync subscriptions in Redis: resumable on any process.

With a Redis broker and ``DataSyncService(resume_window=...)``, a
subscription whose connection drops is kept by its process (the owner) for
the window, and what another process needs to take it over is written here,
expiring with the window: ``snorky:resume:<service>:<sha1 of the token>``
(with several shards, on that key's shard: :mod:`.sharded`), a hash of

- ``o``: the owner's origin (hex), ``e``: the epoch its ``seq`` counts in;
- ``i``: the identity key of the connection that held it (resumption is
  bound to it), ``q``: its items (dealer names and queries, JSON),
  ``r``: its requester (JSON);
- ``c``: the process that claimed it (set once: a token resumes once);
- ``v``: the newest ``seq`` of it no longer kept (set at the hand-over),

and ``...:d``, the deltas it was sent or kept (``"<seq> <delta JSON>"``,
oldest first, at most ``resume_buffer``), written by the owner when it
hands the subscription over.

The hand-over itself goes through the broker (markers on the topics of the
subscription's models, whose order every subscriber shares, then the
owner's answer on the service's topic: see ``DataSyncService._take_over``);
this store only holds state.  Every method raises
:class:`~.base.BrokerUnavailable` when Redis cannot be reached.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .. import wire
from .redis import PREFIX, PROC

if TYPE_CHECKING:
    from .sharded import RedisLike

__all__ = ["RedisResumeStore", "Claimed"]

# KEYS: state; ARGV: ttl ms, liveness ttl ms, the owner's liveness key, then field,
# value pairs.  The owner is alive as it writes (as RedisBroker.claim_many's
# script says of the claimer): its heartbeat may not have run yet.  (Liveness
# keys are not declared: in a Redis Cluster they are on the node, not the slot.)
_PUT = """
redis.call('SET', ARGV[3], '1', 'PX', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[1] .. ':d')
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: state; ARGV: identity key, claimant origin, the liveness keys' suffix.  'none': no such state (never
# written, expired, resumed) or its owner stopped (its liveness key expired: it
# cannot hand it over; the state goes); 'refused': another identity, or claimed already.
_CLAIM = """
local st = redis.call('HMGET', KEYS[1], 'i', 'c', 'o', 'e', 'q', 'r')
if not st[1] then return {'none'} end
if st[1] ~= ARGV[1] or st[2] then return {'refused'} end
if redis.call('EXISTS', '""" + PROC + """' .. st[3] .. ARGV[3]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[1] .. ':d')
  return {'none'}
end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
return {'ok', st[3], st[4], st[5], st[6]}
"""

# KEYS: state; ARGV: min ttl ms, evicted, entries...
_HAND = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then ttl = tonumber(ARGV[1]) end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
redis.call('DEL', KEYS[1] .. ':d')
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1] .. ':d', ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1] .. ':d', ttl) end
return 1
"""

# KEYS: state -> {evicted or false, entries}; both keys deleted
_TAKE = """
local v = redis.call('HGET', KEYS[1], 'v')
local d = redis.call('LRANGE', KEYS[1] .. ':d', 0, -1)
redis.call('DEL', KEYS[1], KEYS[1] .. ':d')
return {v, d}
"""

_DROP = "return redis.call('DEL', KEYS[1], KEYS[1] .. ':d')"


class Claimed:
    """What a claim found: the subscription's owner, epoch, items and requester."""

    __slots__ = ("owner", "epoch", "items", "requester")

    def __init__(self, owner: str, epoch: str, items: list[tuple[str, Any]], requester: Any) -> None:
        self.owner = owner
        self.epoch = epoch
        self.items = items
        self.requester = requester


class RedisResumeStore:
    """The detached subscriptions of one DataSync service, in Redis."""

    def __init__(self, broker: RedisLike, service: str, ttl: float) -> None:
        self.broker = broker
        self.ttl_ms = max(1, int(ttl * 1000))
        self.namespace = f"{PREFIX}resume:{service}:"
        self._put = broker.script(_PUT)
        self._claim = broker.script(_CLAIM)
        self._hand = broker.script(_HAND)
        self._take = broker.script(_TAKE)
        self._drop = broker.script(_DROP)

    def key(self, token: str) -> str:
        """The state's key (the deltas': this + ``:d``, in its slot in a Redis Cluster)."""
        key = self.namespace + hashlib.sha1(token.encode()).hexdigest()
        return self.broker.tagged_key(key, key)

    @staticmethod
    def identity_bytes(identity_key: Any) -> bytes:
        """A connection's identity key (``wire.json_key`` of its identity) as stored."""
        return wire.key_to_bytes(identity_key)

    def put(self, token: str, owner: str, epoch: str, identity_key: Any,
            items: list[tuple[str, Any]], requester: Any) -> None:
        """The subscription of ``token`` detached on ``owner``: resumable
        anywhere for the store's ttl (replaces any earlier state)."""
        key = self.key(token)
        self._put([key], [
            self.ttl_ms, max(1, int(self.broker.peer_expiry * 1000)), PROC + owner + self.broker.liveness_suffix_for(key),
            "o", owner, "e", epoch, "i", self.identity_bytes(identity_key),
            "q", wire.encode([[d, q] for d, q in items]), "r", wire.encode(requester)])

    def claim(self, token: str, identity_key: Any, claimant: str) -> Claimed | bool:
        """Claim the subscription of ``token`` for ``claimant``: what it is,
        or False when there is none (never detached with this store, expired,
        resumed already, or its owner stopped heartbeating) and True when it is refused (another identity, or
        claimed already) — both answered as for an unknown token."""
        key = self.key(token)
        found = self._claim([key], [self.identity_bytes(identity_key), claimant,
                                    self.broker.liveness_suffix_for(key)])
        if _text(found[0]) != "ok":
            return _text(found[0]) == "refused"
        items = [(str(d), q) for d, q in wire.decode(found[3])]
        return Claimed(_text(found[1]), _text(found[2]), items, wire.decode(found[4]))

    def hand(self, token: str, entries: list[tuple[int, Any]], evicted: int, min_ttl: float) -> None:
        """The owner's part of a hand-over: the deltas it kept (``(seq,
        delta)``, oldest first) and the newest seq it no longer keeps, kept
        at least ``min_ttl`` seconds for the claimant to take."""
        self._hand([self.key(token)], [max(1, int(min_ttl * 1000)), evicted,
                                        *[b"%d " % seq + wire.encode(delta) for seq, delta in entries]])

    def take(self, token: str) -> tuple[int, list[tuple[int, Any]]] | None:
        """The claimant's part: ``(evicted, entries)`` as handed (None: not
        found, e.g. Redis restarted empty meanwhile); the state is gone."""
        evicted, raw = self._take([self.key(token)], [])
        if evicted is None:
            return None
        entries = []
        for item in raw:
            num, _, delta = bytes(item).partition(b" ")
            entries.append((int(num), wire.decode(delta)))
        return int(evicted), entries

    def drop(self, token: str) -> None:
        """Forget the state of ``token`` (resumed on its owner, expired, failed)."""
        self._drop([self.key(token)], [])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

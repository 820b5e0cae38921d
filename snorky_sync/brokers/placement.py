"""Where a channel, a key or a topic lives when ``SNORKY_REDIS_URL`` lists several Redis shards.

Placement is a pure function of a name and the number of shards, the same
in every process and every release: the name's 64-bit BLAKE2b digest, mapped
to a shard by Lamping and Veach's *jump consistent hash* ("A Fast, Minimal
Memory, Consistent Hash Algorithm", 2014).  Jump rather than ``digest mod N``
because growing the list from N to N+1 shards moves only the names that land
on the new shard (about 1/(N+1) of them), where ``mod`` would move about
N/(N+1) of them (every channel's history out of reach, at once); its price is
that shards are numbered by their place in the list: add new shards at the
end, never reorder or remove one from the middle.

What is placed by what (see :class:`~.sharded.ShardedBroker`):

* a channel of a routed family (PubSub, Chat): by its topic
  (:func:`~.base.channel_topic`, ``family:<32 hex>``): its publications, the
  processes' subscriptions to it, its history keys (the Lua script that
  numbers a message publishes it on the same shard), and the idempotency
  claims of publishes to it when it has history (that script records their
  answer);
* a key in Redis that belongs to no channel (a shared table, a DataSync
  resume state, an idempotency claim of a channel without history, a SockJS
  session claim): by the key's own name;
* process-wide topics (heartbeats go to every shard; the services' replica,
  control, DataSync and relay topics): shard 0.
"""
from __future__ import annotations

import hashlib
import re

__all__ = ["jump_hash", "shard_of", "split_urls"]

_MULT = 2862933555777941757
_MASK = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash: the bucket in ``range(buckets)``
    of the 64-bit ``key``.  Going from ``buckets`` to ``buckets + 1`` moves a
    key only to the new bucket, and does so for about 1/(buckets+1) of them."""
    if buckets < 1:
        raise ValueError("jump_hash needs at least one bucket")
    b, j = -1, 0
    key &= _MASK
    while j < buckets:
        b = j
        key = (key * _MULT + 1) & _MASK
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_of(name: str, shards: int) -> int:
    """The shard (0 .. ``shards``-1) of ``name`` (a topic or a Redis key)."""
    if shards == 1:
        return 0
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=b"snorky-shard").digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)


# a shard starts where a URL scheme follows a comma (a Sentinel URL holds commas of its own)
_NEXT_URL = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


def split_urls(value: str) -> list[str]:
    """The shards of a ``SNORKY_REDIS_URL`` value: the URLs of its
    comma-separated list, in order (a ``redis+sentinel://`` URL keeps the
    commas between its sentinels).  ValueError for an empty item, a URL with
    no known scheme, or a URL given twice."""
    urls = [u.strip() for u in _NEXT_URL.split(value.strip())]
    if any(u.startswith("redis+cluster://") for u in urls):
        raise ValueError("SNORKY_REDIS_URL: a redis+cluster:// URL is the whole value (one cluster; "
                         "its seed nodes separated by commas: redis+cluster://host:port,host:port)")
    for url in urls:
        if not url.startswith(_SCHEMES):
            raise ValueError(f"SNORKY_REDIS_URL: {url!r} is not a redis://, rediss://, unix:// "
                             "or redis+sentinel:// URL (shards are separated by commas)")
    if len(set(urls)) != len(urls):
        raise ValueError("SNORKY_REDIS_URL lists the same shard twice")
    return urls

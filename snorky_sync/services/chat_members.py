"""Chat's identity membership across processes, routed per channel.

What Snorky 0.1's Chat tells (``presence`` ``joined`` / ``left``, the
``members`` a ``join`` answers) is, with a distributed broker, carried by
the machinery of presence with metadata (:mod:`.presence_routing`): every
connection of this process in a channel is an entry without meta of a
:class:`Members` (a :class:`~.presence.Presence` of every channel of the
service, its topics and hashes ``members:NAME``), so

* the channel's entries live in a Redis hash on the channel's own shard,
  and their changes travel on a topic placed with the channel: only the
  processes with a member of the channel take them off Redis;
* a process's first connection joining a channel subscribes, and once Redis
  confirmed it reads the hash (its marker in the stream of changes); the
  ``join`` (and a server-side join) waits for that read before it becomes a
  member, so the members it answers are every process's;
* dead processes' entries are skipped by the read and dropped when the
  broker says the process is gone (``left``); when a shard comes back each
  process writes its entries there again and reads the channels again.

Entries are per connection; the service counts identities
(:meth:`~.chat.ChatService.remote_member` / ``remote_gone``): an identity is
present while any process has a connection of it in the channel, and the
frames are 0.1's.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from .. import wire
from . import retained
from .presence import Presence, _Channel, _Entry
from .presence_routing import PresenceRouting

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..brokers.sharded import RedisLike
    from ..client import Client
    from .chat import ChatService

__all__ = ["Members"]


class Members(Presence):
    """The identity membership of ``service``'s channels across processes
    (see the module); used only with a distributed broker."""

    def __init__(self, service: ChatService, broker: Broker, family: str) -> None:
        super().__init__(service, True)
        self.chat = service
        self.routing = PresenceRouting(self, cast("RedisLike", broker), family,
                                       own_family=f"members:{service.name}")

    def __repr__(self) -> str:
        return f"<Members of {self.service!r}: {len(self.channels)} channels>"

    def on(self, channel: Any) -> bool:
        return True  # every channel (namespaces speak of presence with metadata only)

    def _notify(self, chan: _Channel, event: str, entry: _Entry, but: Client | None = None) -> None:
        pass  # no presenceChange: the service tells 0.1's joined / left

    # -- a join waits for the channel's read (under the service's lock, then without) -------
    def hold(self, key: Hashable) -> tuple[_Channel, object]:
        """Keep ``key`` subscribed (and read) while a connection joins it:
        the first here subscribes and reads.  Release with :meth:`release`."""
        token = object()
        chan = self.channels.get(key)
        if chan is None:
            chan = self.channels[key] = _Channel(retained.key_value(key))
            assert self.routing is not None
            self.routing.interest(key, chan)
        chan.watchers[cast("Client", token)] = None
        return chan, token

    def wait(self, held: tuple[_Channel, object]) -> None:
        """Until the held channel was read (without the lock)."""
        assert self.routing is not None
        self.routing.wait_loaded(held[0])

    def release(self, key: Hashable, held: tuple[_Channel, object]) -> None:
        """The join is done (or refused): the channel stays while it has members here."""
        chan, token = held
        chan.watchers.pop(cast("Client", token), None)
        if chan.unused() and self.channels.get(key) is chan:
            del self.channels[key]
            assert self.routing is not None
            self.routing.uninterest(key, chan)

    def has(self, key: Hashable) -> bool:
        """Is ``key`` kept here (members, or a join under way)?"""
        return key in self.channels

    # -- the other processes' entries (PresenceRouting calls these under the lock) ----------
    def remote_set(self, chan: _Channel, cid: str, origin: str, identity: Any, meta: Any) -> None:
        if cid in chan.remote:
            return  # (no meta: nothing changes)
        chan.remote[cid] = _Entry(cid, identity, None, origin)
        self.chat.remote_member(self._key(chan), cid, identity)

    def remote_del(self, chan: _Channel, cid: str) -> None:
        entry = chan.remote.pop(cid, None)
        if entry is not None:
            self.chat.remote_gone(self._key(chan), cid, entry.identity)

    def loaded(self, chan: _Channel) -> None:
        pass  # (no answer waits in the channel: a join waits before it joins)

    @staticmethod
    def _key(chan: _Channel) -> Hashable:
        return retained.compact_key(wire.json_key(chan.value))


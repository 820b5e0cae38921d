"""Clients in named sets, routed on the broker while this process holds a member.

The one membership bookkeeping behind ``Service.join_group`` (:mod:`.groups`),
PubSub's subscriptions, Chat's channels and Cursors' documents: for every
key (a channel, group or document, as :func:`~.retained.bounded_key` made
it) the clients in it, in the order they came, and for every client its
keys, kept in step; a client has at most a limit of keys.

Once :meth:`Membership.route` was called (a distributed broker), each key is
a channel of a routed broker family (:meth:`~snorky_sync.brokers.base.Broker.route`):
this process wants the key's topic when the key's first member here
arrives and unwants it when the last one leaves, so a publish reaches only
the processes that hold a member (:meth:`publish` / :meth:`deliver` carry a
frame there and to its members).

Nothing here yields: a service calls it under its lock, if it has one.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from .. import wire
from ..brokers.base import channel_topic
from .base import RPCError

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Service

__all__ = ["Membership"]


class Membership:
    """The clients of ``service`` in keyed sets.

    ``limit`` names the service's attribute holding how many keys one client
    may have (read at every :meth:`add`, so a subclass or the settings may
    change it); past it :meth:`add` raises ``RPCError(too_many)``.
    """

    __slots__ = ("service", "limit", "too_many", "members", "of_client", "family")

    def __init__(self, service: Service, limit: str, too_many: str) -> None:
        self.service = service
        self.limit = limit
        self.too_many = too_many
        self.members: dict[Hashable, dict[Client, None]] = {}  # key -> {client: None} (ordered set)
        self.of_client: dict[Client, set[Hashable]] = {}       # client -> keys
        self.family: str | None = None                          # routed (distributed broker)

    # -- the broker -------------------------------------------------------------------
    def route(self, broker: Broker, family: str, deliver: Callable[[bytes], None],
              echo: bool = False) -> None:
        """Route ``family`` on ``broker`` (a distributed one) to ``deliver``
        (``echo`` as in :meth:`~snorky_sync.brokers.base.Broker.subscribe`);
        from now on a key's first member here wants its topic.  The same
        route given again is a no-op."""
        if self.family == family and broker.families.get(family, (None,))[0] == deliver:
            return
        broker.route(family, deliver, echo)
        self.family = family
        for key in self.members:  # members that came before the broker
            broker.want(self.topic(key))

    def topic(self, key: Hashable) -> str:
        """The broker topic of ``key`` (routed only)."""
        assert self.family is not None
        return channel_topic(self.family, wire.key_to_bytes(key))

    def confirm(self, key: Hashable, timeout: float = 5.0) -> bool:
        """Wait (without a lock held) until publishes to ``key`` made anywhere
        from now on reach this process; True at once when not routed."""
        if self.family is None:
            return True
        return self.service.cluster.confirm(self.topic(key), timeout)

    def publish(self, key: Hashable, frame: bytes) -> None:
        """Send ``frame`` to the other processes holding a member of ``key``
        (they give it to theirs with :meth:`deliver`); nothing when not routed."""
        if self.family is not None:
            self.service.cluster.publish(self.topic(key), wire.pack_routed(key, frame))

    def deliver(self, data: bytes) -> None:
        """A frame :meth:`publish` sent from another process: to our members."""
        key, frame = wire.unpack_routed(data)
        members = self.members.get(key)
        if members:
            self.service.broadcast_frame(members, frame)

    # -- membership ---------------------------------------------------------------------
    def has(self, client: Client, key: Hashable) -> bool:
        mine = self.of_client.get(client)
        return mine is not None and key in mine

    def add(self, client: Client, key: Hashable) -> bool:
        """Put ``client`` in ``key``: False if it is there already,
        ``RPCError(too_many)`` if it has its limit of keys."""
        mine = self.of_client.get(client)
        if mine is None:
            mine = self.of_client[client] = set()
        elif key in mine:
            return False
        elif len(mine) >= getattr(self.service, self.limit):
            raise RPCError(self.too_many)
        mine.add(key)
        members = self.members.get(key)
        if members is None:
            members = self.members[key] = {}
            if self.family is not None:  # the key's first member here
                self.service.cluster.want(self.topic(key))
        members[client] = None
        return True

    def drop(self, client: Client, key: Hashable) -> bool:
        """Take ``client`` out of ``key``: False if it was not in it."""
        mine = self.of_client.get(client)
        if mine is None or key not in mine:
            return False
        mine.discard(key)
        if not mine:
            del self.of_client[client]
        members = self.members[key]
        del members[client]
        if not members:
            del self.members[key]
            if self.family is not None:  # its last member here left
                self.service.cluster.unwant(self.topic(key))
        return True

    def drop_all(self, client: Client) -> list[Hashable]:
        """Take ``client`` out of every key; returns them."""
        keys = list(self.of_client.get(client, ()))
        for key in keys:
            self.drop(client, key)
        return keys

    def clients(self, key: Hashable) -> dict[Client, None]:
        """The members of ``key`` here (an ordered set; empty if none)."""
        return self.members.get(key) or {}

    def keys_of(self, client: Client) -> set[Hashable]:
        """``client``'s keys (empty if none)."""
        return self.of_client.get(client) or set()

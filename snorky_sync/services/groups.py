"""Named groups of clients, broadcast to across processes (``Service.join_group``...).

A group is a set of a service's clients named by a JSON value (usually a
string: ``"poll:7"``).  ``broadcast_group(group, msg)`` delivers ``msg`` to
the members held by this process and, when the service's broker is
distributed (``SNORKY_REDIS_URL``), to the members every other process holds:
each group is a routed channel of the broker
(:meth:`~snorky_sync.brokers.base.Broker.route`), wanted by a process while
it has a member of it, as PubSub's channels are.  A client that disconnects
leaves its groups.

All the methods run without yielding (no lock needed) except
:meth:`Groups.confirm`, which waits for Redis to confirm a group's first
member here.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .. import wire
from ..brokers.base import channel_topic
from . import retained
from .base import RPCError

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Service

__all__ = ["Groups"]


class Groups:
    """The groups of one service (``service.groups``; use the Service methods)."""

    __slots__ = ("service", "members", "of_client", "family")

    def __init__(self, service: Service) -> None:
        self.service = service
        self.members: dict[Hashable, dict[Client, None]] = {}  # group key -> {client: None}
        self.of_client: dict[Client, set[Hashable]] = {}       # client -> group keys
        self.family: str | None = None                          # routed (distributed broker)

    # -- the broker -----------------------------------------------------------------
    def use_broker(self, broker: Broker) -> None:
        if not broker.distributed:
            return
        family = f"group:{self.service.name}"
        if self.family == family and broker.families.get(family, (None,))[0] == self._deliver:
            return  # given the same broker again
        self.family = family
        broker.route(family, self._deliver)
        for key in self.members:  # joined before the broker came
            broker.want(self._topic(key))

    def _topic(self, key: Hashable) -> str:
        assert self.family is not None
        return channel_topic(self.family, wire.key_to_bytes(key))

    def _deliver(self, data: bytes) -> None:
        """A broadcast from another process: the same frame, to our members."""
        key, frame = wire.unpack_routed(data)
        members = self.members.get(key)
        if members:
            self.service.broadcast_frame(members, frame)

    # -- membership -------------------------------------------------------------------
    def key(self, group: Any) -> Hashable:
        service = self.service
        return retained.bounded_key(group, service.max_group_name_size, "Group name too long")

    def join(self, client: Client, group: Any) -> bool:
        key = self.key(group)
        mine = self.of_client.get(client)
        if mine is not None and key in mine:
            return False
        if client.closed:
            return False  # it left already: client_disconnected will not come again
        if mine is None:
            mine = self.of_client[client] = set()
        elif len(mine) >= self.service.max_groups_per_client:
            raise RPCError("Too many groups")
        mine.add(key)
        members = self.members.get(key)
        if members is None:
            members = self.members[key] = {}
            if self.family is not None:  # the group's first member here
                self.service.cluster.want(self._topic(key))
        members[client] = None
        return True

    def confirm(self, group: Any, timeout: float) -> bool:
        if self.family is None:
            return True
        return self.service.cluster.confirm(self._topic(self.key(group)), timeout)

    def leave(self, client: Client, group: Any) -> bool:
        key = wire.json_key(group)
        mine = self.of_client.get(client)
        if mine is None or key not in mine:
            return False
        self._drop(client, key, mine)
        return True

    def leave_all(self, client: Client) -> None:
        mine = self.of_client.get(client)
        if mine is not None:
            for key in list(mine):
                self._drop(client, key, mine)

    def _drop(self, client: Client, key: Hashable, mine: set[Hashable]) -> None:
        mine.discard(key)
        if not mine:
            del self.of_client[client]
        members = self.members.get(key)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self.members[key]
                if self.family is not None:  # its last member here left
                    self.service.cluster.unwant(self._topic(key))

    # -- sending ----------------------------------------------------------------------------
    def broadcast(self, group: Any, msg: Any) -> int:
        key = wire.json_key(group)
        frame = wire.encode_frame(self.service.name, msg)
        members = self.members.get(key)
        n = self.service.broadcast_frame(members, frame) if members else 0
        if self.family is not None:  # to the processes with a member of it
            self.service.cluster.publish(self._topic(key), wire.pack_routed(key, frame))
        return n

    def local_members(self, group: Any) -> list[Client]:
        return list(self.members.get(wire.json_key(group), ()))

    def of(self, client: Client) -> list[Any]:
        return [_value(key) for key in self.of_client.get(client, ())]


def _value(key: Hashable) -> Any:
    """The JSON value a group key was made from."""
    if type(key) is str:
        return key
    return wire.decode(key[1])  # type: ignore[index]

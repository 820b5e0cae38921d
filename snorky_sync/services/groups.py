"""Named groups of clients, broadcast to across processes (``Service.join_group``...).

A group is a set of a service's clients named by a JSON value (usually a
string: ``"poll:7"``).  ``broadcast_group(group, msg)`` delivers ``msg`` to
the members held by this process and, when the service's broker is
distributed (``SNORKY_REDIS_URL``), to the members every other process holds:
each group is a routed channel of the broker
(:meth:`~snorky_sync.brokers.base.Broker.route`), wanted by a process while
it has a member of it, as PubSub's channels are (both are a
:class:`~.membership.Membership`).  A client that disconnects leaves its
groups.

All the methods run without yielding (no lock needed) except
:meth:`Groups.confirm`, which waits for Redis to confirm a group's first
member here.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .. import wire
from . import retained
from .membership import Membership

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Service

__all__ = ["Groups"]


class Groups(Membership):
    """The groups of one service (``service.groups``; use the Service methods)."""

    __slots__ = ()

    def __init__(self, service: Service) -> None:
        super().__init__(service, "max_groups_per_client", too_many="Too many groups")

    def use_broker(self, broker: Broker) -> None:
        if broker.distributed:
            self.route(broker, f"group:{self.service.name}", self.deliver)

    def key(self, group: Any) -> Hashable:
        return retained.bounded_key(group, self.service.max_group_name_size, "Group name too long")

    def join(self, client: Client, group: Any) -> bool:
        key = self.key(group)
        if client.closed:
            return False  # it left already: client_disconnected will not come again
        return self.add(client, key)

    def confirm_group(self, group: Any, timeout: float) -> bool:
        return self.confirm(self.key(group), timeout)

    def leave(self, client: Client, group: Any) -> bool:
        return self.drop(client, wire.json_key(group))

    def leave_all(self, client: Client) -> None:
        self.drop_all(client)

    def broadcast(self, group: Any, msg: Any) -> int:
        key = wire.json_key(group)
        frame = wire.encode_frame(self.service.name, msg)
        members = self.members.get(key)
        n = self.service.broadcast_frame(members, frame) if members else 0
        self.publish(key, frame)  # to the processes with a member of it
        return n

    def local_members(self, group: Any) -> list[Client]:
        return list(self.clients(wire.json_key(group)))

    def of(self, client: Client) -> list[Any]:
        return [retained.key_to_value(key) for key in self.keys_of(client)]

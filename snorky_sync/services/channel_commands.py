"""What PubSub and Chat share beyond their membership: presence commands and
server-side channels.

:class:`PresenceCommands` gives a channel service ``updatePresence``,
``presence`` and ``presenceStats`` (protocol.md §6) over its
:class:`~.presence.Presence`; :class:`ServerChannels` the hooks and queries
the control service uses for server-side subscriptions (``connect_channels``,
``serves``, ``channel_key``, ``channel_counts``).  Each service says which
:class:`~.membership.Membership` holds its channels (:attr:`members_name`)
and what a page outside the channel is told (:attr:`not_member`); the
joining itself (``subscribe_client`` / ``unsubscribe_client``) stays with
each service: a PubSub subscription and a Chat join differ.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from .. import wire
from ..logs import RateLimitedLogger, printable
from . import presence as _presence
from .base import RPCError, RPCService, rpc_command

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client
    from .base import Request
    from .membership import Membership
    from .presence import Presence

__all__ = ["PresenceCommands", "ServerChannels"]

_warn = RateLimitedLogger(logging.getLogger("snorky_sync.services"))


class _ChannelService(RPCService):
    """The parts of PubSub and Chat the mixins below read."""

    #: the attribute holding the service's Membership ("subscribed", "joined")
    members_name = ""
    #: the answer to a page asking about a channel it is not in
    not_member = ""
    #: what a server-side join is called in the log ("subscribed", "joined")
    joined_verb = ""

    presence_state: Presence | None
    connected: set[Client]

    def _key(self, channel: Any) -> Hashable:
        raise NotImplementedError

    def subscribe_client(self, client: Client, channel: Any) -> bool:
        raise NotImplementedError

    @property
    def channel_members(self) -> Membership:
        members: Membership = getattr(self, self.members_name)
        return members


class PresenceCommands(_ChannelService):
    """``updatePresence``, ``presence`` and ``presenceStats`` of a channel
    service whose channels keep presence (``presence=True``, or their
    namespace's); a page must be in the channel."""

    def _presence_key(self, client: Client, channel: Any) -> tuple[Presence, Hashable]:
        state = _presence.enabled(self.presence_state, channel)
        key = self._key(channel)
        if not self.channel_members.has(client, key):
            raise RPCError(self.not_member)
        return state, key

    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def update_presence(self, req: Request, channel: Any, meta: Any) -> None:
        """``updatePresence({channel, meta})``: this connection's ``meta`` in
        ``channel``'s presence (the watchers are told ``update``)."""
        state = _presence.enabled(self.presence_state, channel)
        kept = state.meta(meta)
        with self.lock:
            state, key = self._presence_key(req.client, channel)
            state.update(req.client, key, kept)
        state.published(key)

    @rpc_command(lock=False)
    def presence(self, req: Request, channel: Any) -> dict[str, Any]:
        """``presence({channel})`` -> ``{"presence": [entries]}`` (a member only)."""
        state, key = self._presence_key(req.client, channel)
        return {"presence": state.read_entries(key)}

    @rpc_command(lock=False)
    def presence_stats(self, req: Request, channel: Any) -> dict[str, int]:
        """``presenceStats({channel})`` -> ``{"clients": n, "users": m}`` (a member only)."""
        state, key = self._presence_key(req.client, channel)
        return state.read_stats(key)


class ServerChannels(_ChannelService):
    """Server-side channels (ControlService's subscribe/unsubscribe/channels,
    :meth:`connect_channels`): the service keeps its connections in
    ``connected`` and implements ``subscribe_client`` / ``unsubscribe_client``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Snorky 0.1's client_connected did nothing: a subclass written for it
        # overrides it without super(), and its connections would silently be
        # out of reach of control.subscribe and connect_channels.  As Service
        # does for client_disconnected and groups, the bookkeeping runs anyway.
        own = cls.__dict__.get("client_connected")
        if own is not None and not getattr(own, "_keeps_server_channels", False):
            @functools.wraps(own)
            def client_connected(self: ServerChannels, client: Client) -> None:
                own(self, client)
                if client not in self.connected:  # the override did not call super()
                    ServerChannels.client_connected(self, client)
            client_connected._keeps_server_channels = True  # type: ignore[attr-defined]
            cls.client_connected = client_connected  # type: ignore[method-assign]

    def connect_channels(self, client: Client) -> Iterable[Any]:
        """Hook: the channels ``client`` is put in by the server as it
        connects (Centrifugo's server-side subscriptions).  Default: none.
        Each goes through the read authorization of a page's own subscribe
        or join; one refused is skipped (logged), the others are entered.
        The page is told of each with a ``subscribed`` notification before
        any of its messages.  Runs in the connection's greenlet before its
        first message is read: it may wait (a database), the page waits."""
        return ()

    def client_connected(self, client: Client) -> None:
        """Remember ``client`` (server-side channels reach it) and put it in
        :meth:`connect_channels`.  An override calls super()."""
        self.connected.add(client)
        for channel in self.connect_channels(client) or ():
            try:
                self.subscribe_client(client, channel)
            except RPCError as exc:
                _warn.info("connect-channel-refused", "%s: %s not %s to %s as it connected: %s",
                           self.name, printable(client.remote_address), self.joined_verb,
                           printable(wire.encode(channel), 100), exc.message)

    def serves(self, client: Client) -> bool:
        """Is ``client`` a connection of a registry serving this service (and
        still connected)?"""
        return client in self.connected

    def channel_key(self, channel: Any) -> Hashable:
        """``channel``'s key; ``RPCError("Channel too long")`` past :attr:`max_channel_size`."""
        return self._key(channel)

    def channel_counts(self) -> list[tuple[Any, int]]:
        """``(channel, connections)`` of every channel with members in this process."""
        with self.lock:
            counts = [(key, len(members)) for key, members in self.channel_members.members.items()]
        return [(key if isinstance(key, str) else wire.decode(key[1]), n)  # type: ignore[index]
                for key, n in counts]

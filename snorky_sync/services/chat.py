"""Chat with presence (PROTOCOL.md §3).

Connections join channels; presence counts identities, not connections: a
user with two tabs joins once (``presence: joined`` when their first
connection joins) and leaves once (``left`` when their last one leaves).
Every connection needs an identity (the endpoint's ``authenticate`` hook).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .. import wire
from .base import RPCError, RPCService, bounded_key, rpc_command

__all__ = ["ChatService"]

_json_key = wire.json_key


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset."""
    return datetime.now(timezone.utc).isoformat()


class _Channel:
    __slots__ = ("members",)

    def __init__(self) -> None:
        # identity key -> (identity, {client: None})
        self.members: dict[Any, tuple[Any, dict]] = {}

    def clients(self):
        for _, conns in self.members.values():
            yield from conns


class ChatService(RPCService):
    """``join``, ``leave``, ``send``, ``read``; limits ``max_channels`` per
    connection and ``max_channel_size`` bytes of JSON per channel."""

    max_channels = 1000
    max_channel_size = 1024

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.channels: dict[Any, _Channel] = {}
        self.client_channels: dict[Any, dict[Any, Any]] = {}  # client -> {channel key: channel value}

    def _identity(self, client) -> Any:
        if client.identity is None:
            raise RPCError("Not authenticated")
        return client.identity

    def _key(self, channel: Any) -> Any:
        return bounded_key(channel, self.max_channel_size, "Channel too long")

    @rpc_command
    def join(self, req, channel):
        client = req.client
        identity = self._identity(client)
        key = self._key(channel)
        mine = self.client_channels.get(client)
        if mine is not None and key in mine:
            raise RPCError("Already joined")
        if mine is not None and len(mine) >= self.max_channels:
            raise RPCError("Too many channels")
        chan = self.channels.get(key)
        if chan is None:
            chan = self.channels[key] = _Channel()
        ikey = _json_key(identity)
        entry = chan.members.get(ikey)
        if entry is None:
            self.broadcast(chan.clients(), {"type": "presence", "from": identity, "channel": channel,
                                            "status": "joined", "timestamp": now_iso()})
            entry = chan.members[ikey] = (identity, {})
        entry[1][client] = None
        self.client_channels.setdefault(client, {})[key] = channel
        return {"members": [ident for ident, _ in chan.members.values()]}

    @rpc_command
    def leave(self, req, channel):
        client = req.client
        key = self._key(channel)
        mine = self.client_channels.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        self._leave(client, key, channel)

    @rpc_command
    def send(self, req, channel, body):
        client = req.client
        key = self._key(channel)
        mine = self.client_channels.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        self.broadcast(self.channels[key].clients(), {
            "type": "message", "from": client.identity, "channel": channel, "body": body,
            "timestamp": now_iso()})

    @rpc_command
    def read(self, req, channel):
        client = req.client
        identity = self._identity(client)
        chan = self.channels.get(self._key(channel))
        if chan is None:
            return None
        entry = chan.members.get(_json_key(identity))
        if entry is None:
            return None
        others = [c for c in entry[1] if c is not client]
        if others:
            self.broadcast(others, {"type": "read", "channel": channel, "timestamp": now_iso()})
        return None

    def _leave(self, client, key, channel) -> None:
        mine = self.client_channels[client]
        del mine[key]
        if not mine:
            del self.client_channels[client]
        chan = self.channels[key]
        ikey = _json_key(client.identity)
        identity, conns = chan.members[ikey]
        del conns[client]
        if conns:
            return
        del chan.members[ikey]
        if not chan.members:
            del self.channels[key]
            return
        self.broadcast(chan.clients(), {"type": "presence", "from": identity, "channel": channel,
                                        "status": "left", "timestamp": now_iso()})

    def client_disconnected(self, client) -> None:
        with self.lock:
            for key, channel in list(self.client_channels.get(client, {}).items()):
                self._leave(client, key, channel)

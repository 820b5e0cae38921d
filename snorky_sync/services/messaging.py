"""Messaging: named participants send messages to each other (PROTOCOL.md §3).

A connection registers one or more participant names (global to the
service); any participant can send to any other by name.  Override
:meth:`MessagingService.is_name_allowed` to restrict names (e.g. to the
connection's identity).
"""
from __future__ import annotations

from typing import Any

from .base import RPCError, RPCService, rpc_command

__all__ = ["MessagingService"]


class MessagingService(RPCService):
    """``registerParticipant``, ``unregisterParticipant``, ``listParticipants``, ``send``."""

    max_names_per_client = 100
    max_name_size = 256

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.participants: dict[Any, Any] = {}   # name -> client
        self.names_by_client: dict[Any, set] = {}  # client -> names

    def is_name_allowed(self, client, name: Any) -> bool:
        """Hook: may ``client`` register ``name``?  Default: yes."""
        return True

    def _checked_name(self, name: Any) -> Any:
        if not isinstance(name, str) or len(name) > self.max_name_size:
            raise RPCError("Name not allowed")
        return name

    @rpc_command
    def register_participant(self, req, name):
        if isinstance(name, str) and name in self.participants:
            raise RPCError("Name already registered")
        self._checked_name(name)
        client = req.client
        if not self.is_name_allowed(client, name):
            raise RPCError("Name not allowed")
        mine = self.names_by_client.setdefault(client, set())
        if len(mine) >= self.max_names_per_client:
            raise RPCError("Too many names")
        mine.add(name)
        self.participants[name] = client

    @rpc_command
    def unregister_participant(self, req, name):
        owner = self.participants.get(name) if isinstance(name, str) else None
        if owner is None:
            raise RPCError("Unknown participant")
        if owner is not req.client:
            raise RPCError("Invalid participant")
        self._forget(req.client, name)

    @rpc_command
    def list_participants(self, req):
        return sorted(self.participants)

    @rpc_command
    def send(self, req, sender, dest, body):
        if not isinstance(sender, str) or self.participants.get(sender) is not req.client:
            raise RPCError("Invalid sender")
        target = self.participants.get(dest) if isinstance(dest, str) else None
        if target is None:
            raise RPCError("Unknown destination")
        self.send_message_to(target, {"type": "message", "sender": sender, "dest": dest, "body": body})

    def _forget(self, client, name) -> None:
        del self.participants[name]
        mine = self.names_by_client.get(client)
        if mine is not None:
            mine.discard(name)
            if not mine:
                del self.names_by_client[client]

    def client_disconnected(self, client) -> None:
        with self.lock:
            for name in list(self.names_by_client.get(client, ())):
                self._forget(client, name)

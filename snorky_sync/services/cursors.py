"""Cursors: shared cursors (carets, selections, pointers) on documents (PROTOCOL.md §3).

A connection joins a document and creates cursors with its own *private*
handles; everybody else in the document sees them under a *public* handle
(an integer 0..65535, unique within the document) with ``cursorAdded``,
``cursorUpdated`` and ``cursorRemoved``.  A connection never receives
notifications about its own cursors.  Every connection needs an identity.
"""
from __future__ import annotations

import random
from typing import Any

from .. import wire
from .base import RPCError, RPCService, bounded_key, rpc_command

__all__ = ["CursorsService"]

_json_key = wire.json_key
_random = random.SystemRandom()


class _Document:
    __slots__ = ("clients", "cursors")

    def __init__(self) -> None:
        self.clients: dict[Any, None] = {}        # joined connections (ordered set)
        self.cursors: dict[int, dict] = {}        # public handle -> cursor
        # the owner of each cursor is in Cursors._owners


class CursorsService(RPCService):
    """``join``, ``leave``, ``createCursor``, ``updateCursor``, ``removeCursor``."""

    MAX_CURSORS = 16
    """Cursors per connection, across all its documents (``Too many cursors``)."""

    max_documents = 1000
    max_document_size = 1024

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.documents: dict[Any, _Document] = {}
        self.client_documents: dict[Any, dict[Any, Any]] = {}   # client -> {doc key: doc value}
        # client -> {private handle key: (doc key, public handle)}
        self.client_cursors: dict[Any, dict[Any, tuple[Any, int]]] = {}

    # -- hooks -----------------------------------------------------------------
    def check_new_cursor_allowed(self, client, document: Any) -> None:
        """Raise RPCError to refuse a new cursor.  Default: at most ``MAX_CURSORS``
        per connection (``Too many cursors``)."""
        if len(self.client_cursors.get(client, ())) >= self.MAX_CURSORS:
            raise RPCError("Too many cursors")

    # -- helpers -----------------------------------------------------------------
    def _doc_key(self, document: Any) -> Any:
        return bounded_key(document, self.max_document_size, "Document too long")

    def _others(self, doc: _Document, client):
        return [c for c in doc.clients if c is not client]

    def _new_handle(self, doc: _Document) -> int:
        if len(doc.cursors) >= 65536:
            raise RPCError("Too many cursors")
        while True:
            handle = _random.randrange(65536)
            if handle not in doc.cursors:
                return handle

    def _owned(self, client, private_handle) -> tuple[Any, int]:
        found = self.client_cursors.get(client, {}).get(_json_key(private_handle))
        if found is None:
            raise RPCError("No such cursor")
        return found

    # -- commands ------------------------------------------------------------------
    @rpc_command
    def join(self, req, document):
        client = req.client
        if client.identity is None:
            raise RPCError("Not authenticated")
        key = self._doc_key(document)
        mine = self.client_documents.get(client)
        if mine is not None and key in mine:
            raise RPCError("Already joined")
        if mine is not None and len(mine) >= self.max_documents:
            raise RPCError("Too many documents")
        doc = self.documents.get(key)
        if doc is None:
            doc = self.documents[key] = _Document()
        doc.clients[client] = None
        self.client_documents.setdefault(client, {})[key] = document
        return {"cursors": list(doc.cursors.values())}

    @rpc_command
    def leave(self, req, document):
        client = req.client
        key = self._doc_key(document)
        mine = self.client_documents.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        self._leave(client, key)

    @rpc_command
    def create_cursor(self, req, private_handle, document, position, status):
        client = req.client
        key = self._doc_key(document)
        mine = self.client_documents.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        pkey = _json_key(private_handle)
        if pkey in self.client_cursors.get(client, ()):
            raise RPCError("Reused handle")
        self.check_new_cursor_allowed(client, document)
        doc = self.documents[key]
        handle = self._new_handle(doc)
        cursor = {"publicHandle": handle, "document": mine[key], "position": position,
                  "status": status, "owner": client.identity}
        doc.cursors[handle] = cursor
        self.client_cursors.setdefault(client, {})[pkey] = (key, handle)
        self.broadcast(self._others(doc, client), {"type": "cursorAdded", "cursor": cursor})
        return handle

    @rpc_command
    def update_cursor(self, req, private_handle, new_data):
        client = req.client
        key, handle = self._owned(client, private_handle)
        if not isinstance(new_data, dict):
            raise RPCError("Invalid params")
        doc = self.documents[key]
        cursor = doc.cursors[handle]
        if "position" in new_data:
            cursor["position"] = new_data["position"]
        if "status" in new_data:
            cursor["status"] = new_data["status"]
        self.broadcast(self._others(doc, client), {"type": "cursorUpdated", "cursor": cursor})

    @rpc_command
    def remove_cursor(self, req, private_handle):
        client = req.client
        key, handle = self._owned(client, private_handle)
        self._remove(client, _json_key(private_handle), key, handle)

    # -- state changes ---------------------------------------------------------------
    def _remove(self, client, pkey, key, handle) -> None:
        mine = self.client_cursors[client]
        del mine[pkey]
        if not mine:
            del self.client_cursors[client]
        doc = self.documents[key]
        cursor = doc.cursors.pop(handle)
        self.broadcast(self._others(doc, client), {
            "type": "cursorRemoved", "cursor": {"publicHandle": handle, "document": cursor["document"]}})

    def _leave(self, client, key) -> None:
        for pkey, (dkey, handle) in list(self.client_cursors.get(client, {}).items()):
            if dkey == key:
                self._remove(client, pkey, dkey, handle)
        mine = self.client_documents[client]
        del mine[key]
        if not mine:
            del self.client_documents[client]
        doc = self.documents[key]
        del doc.clients[client]
        if not doc.clients:
            del self.documents[key]

    def client_disconnected(self, client) -> None:
        with self.lock:
            for key in list(self.client_documents.get(client, ())):
                self._leave(client, key)

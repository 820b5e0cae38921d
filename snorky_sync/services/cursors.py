"""Cursors: shared cursors (carets, selections, pointers) on documents (PROTOCOL.md §3).

A connection joins a document and creates cursors with its own *private*
handles; everybody else in the document sees them under a *public* handle
(an integer 0..65535, unique within the document) with ``cursorAdded``,
``cursorUpdated`` and ``cursorRemoved``.  A connection never receives
notifications about its own cursors.  Every connection needs an identity.

With a distributed broker (Redis) documents span processes: every process
keeps a replica of the others' cursors (:class:`~.replica.Replica`), so a
``join`` answers with the cursors of every process and each process tells
its own connections in the document about cursor changes made anywhere.  A
public handle is claimed in Redis before it is handed out (one atomic
script per handle, see :meth:`~snorky_sync.brokers.base.Broker.claim`), so
two processes never give the same handle to two cursors of one document.
While Redis is unreachable a handle is chosen among those this process
knows to be free, unconfirmed; on reconnect every handle is claimed again
and a cursor whose handle another process took meanwhile gets a new one
(the others see ``cursorRemoved`` then ``cursorAdded``).
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import random
from typing import Any

from .. import wire
from ..brokers.base import BrokerUnavailable
from ..metrics import counters
from . import retained
from .base import RPCError, RPCService, rpc_command
from .replica import Replica, present

__all__ = ["CursorsService", "Cursor"]

_json_key = wire.json_key
_random = random.SystemRandom()
log = logging.getLogger("snorky_sync.services.cursors")


def _field(name: str):
    def get(self):
        return retained.json_value(self[name], self.json[name])

    def set(self, value):
        self[name], self.json[name] = retained.bounded_json(value)
    return property(get, set)


class Cursor(dict):
    """One cursor: Snorky 0.1's ``Cursor(private_handle, public_handle,
    document, position, status, owner)``.

    It *is* its JSON form (``for_json()`` returns itself: ``publicHandle``,
    ``document``, ``position``, ``status``, ``owner`` = the owner's
    identity), so the service sends it without copying; the attributes read
    and write that form.  ``private_handle`` and ``owner`` (the Client) are
    kept beside it.  A position or status that is a list or an object is
    kept as its JSON (:mod:`.retained`), never as parsed Python objects;
    ``json`` holds both fields' JSON bytes, whose lengths are their sizes.
    """

    __slots__ = ("_handle", "_keyed", "owner", "json")

    def __init__(self, private_handle: Any, public_handle: int, document: Any, position: Any,
                 status: Any, owner, _fields: tuple | None = None, _handle_key: Any = None) -> None:
        (pos, pos_json), (st, st_json) = _fields or (retained.bounded_json(position),
                                                     retained.bounded_json(status))
        super().__init__(publicHandle=public_handle, document=document, position=pos,
                         status=st, owner=getattr(owner, "identity", None))
        self.json = {"position": pos_json, "status": st_json}
        # the service keeps the handle's compact key (.retained), 0.1 code may give a value
        self._keyed = _handle_key is not None
        self._handle = _handle_key if self._keyed else private_handle
        self.owner = owner

    @property
    def private_handle(self) -> Any:
        """The owner's handle of the cursor, as it sent it (0.1's attribute)."""
        return retained.key_to_value(self._handle) if self._keyed else self._handle

    @private_handle.setter
    def private_handle(self, value: Any) -> None:
        self._keyed, self._handle = False, value

    def for_json(self) -> dict:
        """The cursor as sent to the other connections of the document."""
        return self

    def size(self, handle_size: int = 0) -> int:
        """Bytes of JSON of its position and status (plus ``handle_size``)."""
        return handle_size + len(self.json["position"]) + len(self.json["status"])

    public_handle = property(lambda self: self["publicHandle"])
    document = property(lambda self: self["document"])
    position = _field("position")
    status = _field("status")

    def __repr__(self) -> str:
        return f"<Cursor {self.public_handle} of {self['owner']!r} in {self.document!r}>"


class _Document:
    __slots__ = ("clients", "cursors")

    def __init__(self) -> None:
        self.clients: dict[Any, None] = {}        # joined connections (ordered set)
        self.cursors: dict[int, dict] = {}        # public handle -> cursor
        # the owner of each cursor is in Cursors._owners


class CursorsService(RPCService):
    """``join``, ``leave``, ``createCursor``, ``updateCursor``, ``removeCursor``."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    MAX_CURSORS = 16
    """Cursors per connection, across all its documents (``Too many cursors``)."""

    max_documents = 1000
    """Documents joined per connection (``Too many documents``)."""
    max_document_size = 1024
    """Bytes of JSON of a document name (``Document too long``)."""
    max_cursor_size = 4096
    """Bytes of JSON of one cursor's private handle, position and status
    together (``Cursor too large``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # Snorky 0.1's hook took (client); this one takes (client, document)
        hook = inspect.signature(self.check_new_cursor_allowed).parameters
        self._hook_takes_document = len(hook) >= 2 or any(
            p.kind is p.VAR_POSITIONAL for p in hook.values())
        self.documents: dict[Any, _Document] = {}
        self.client_documents: dict[Any, dict[Any, Any]] = {}   # client -> {doc key: doc value}
        # client -> {private handle key: (doc key, public handle)}
        self.client_cursors: dict[Any, dict[Any, tuple[Any, int]]] = {}
        self.replica: Replica | None = None
        # other processes' cursors: doc key -> {public handle: (origin, cursor)}
        self.remote_docs: dict[Any, dict[int, tuple[str, dict]]] = {}
        self.tokens: dict[tuple[Any, int], str] = {}   # (doc key, handle) -> claim token
        self._reserved: set[tuple[Any, int]] = set()   # handles being claimed right now
        self._releases: list[tuple[str, str]] = []     # claims of removed cursors, to give back

    def use_broker(self, broker) -> None:
        super().use_broker(broker)
        if broker.distributed:
            self.replica = Replica(self, broker, f"cursors:{self.name}")

    # -- hooks -----------------------------------------------------------------
    def check_new_cursor_allowed(self, client, document: Any = None) -> None:
        """Raise RPCError to refuse a new cursor.  Default: at most ``MAX_CURSORS``
        per connection (``Too many cursors``).  An override may take
        ``(client)`` only, as in Snorky 0.1."""
        if len(self.client_cursors.get(client, ())) >= self.MAX_CURSORS:
            raise RPCError("Too many cursors")

    def check_identity(self, client) -> None:
        """Raise ``Not authenticated`` unless the connection has an identity."""
        if client.identity is None:
            raise RPCError("Not authenticated")

    def do_leave(self, client, document: Any) -> None:
        """Make ``client`` leave ``document``, removing its cursors there (as the
        ``leave`` command; call it under ``self.lock``)."""
        key = self._doc_key(document)
        mine = self.client_documents.get(client)
        if mine is None or key not in mine:
            raise RPCError("Not joined")
        self._leave(client, key)

    def do_remove_cursor(self, client, private_handle: Any) -> None:
        """Remove one of ``client``'s cursors (as ``removeCursor``; under ``self.lock``)."""
        key, handle = self._owned(client, private_handle)
        self._remove(client, _json_key(private_handle), key, handle)
        self._release()

    # -- helpers -----------------------------------------------------------------
    def _doc_key(self, document: Any) -> Any:
        return retained.bounded_key(document, self.max_document_size, "Document too long")

    def _handle_key(self, private_handle: Any) -> Any:
        return retained.bounded_key(private_handle, self.max_cursor_size, "Cursor too large")

    def _fields(self, pkey: Any, pos: tuple, st: tuple) -> tuple:
        """``(pos, st)``, the kept forms of a cursor's position and status
        (from :func:`.retained.bounded_json`), or ``Cursor too large`` when
        they and the private handle exceed ``max_cursor_size`` together."""
        if retained.key_size(pkey) + len(pos[1]) + len(st[1]) > self.max_cursor_size:
            raise RPCError("Cursor too large")
        return pos, st

    def _others(self, doc: _Document, client):
        return [c for c in doc.clients if c is not client]

    def _new_handle(self, doc: _Document, key: Any = None) -> int:
        if self.replica is None:
            if len(doc.cursors) >= 65536:
                raise RPCError("Too many cursors")
            while True:
                handle = _random.randrange(65536)
                if handle not in doc.cursors:
                    return handle
        remote = self.remote_docs.get(key, {})
        if len(doc.cursors) + len(remote) + len(self._reserved) >= 65536:
            raise RPCError("Too many cursors")
        while True:
            handle = _random.randrange(65536)
            if handle not in doc.cursors and handle not in remote and (key, handle) not in self._reserved:
                return handle

    def _claim_key(self, key: Any, handle: int) -> str:
        digest = hashlib.sha1(wire.key_to_bytes(key)).hexdigest()
        return f"cursors:{self.name}:{digest}:{handle}"

    def _claim_handle(self, client, key: Any) -> tuple[int, str]:
        """Reserve and claim a free public handle in document ``key`` (no lock held)."""
        for _ in range(16):
            with self.lock:
                doc = self.documents.get(key)
                if doc is None:
                    raise RPCError("Not joined")
                handle = self._new_handle(doc, key)
                self._reserved.add((key, handle))
            try:
                token = self.cluster.claim(self._claim_key(key, handle))
            except BrokerUnavailable:
                counters["cursors_handles_unconfirmed"] += 1
                token = ""
            except BaseException:
                with self.lock:
                    self._reserved.discard((key, handle))
                raise
            if token is not None:
                return handle, token  # still reserved: the caller installs it
            with self.lock:  # a live process has it (its announcement is on the way)
                self._reserved.discard((key, handle))
        raise RPCError("Too many cursors")

    def _owned(self, client, private_handle) -> tuple[Any, int]:
        found = self.client_cursors.get(client, {}).get(_json_key(private_handle))
        if found is None:
            raise RPCError("No such cursor")
        return found

    # -- commands ------------------------------------------------------------------
    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def join(self, req, document):
        if self.replica is not None:
            self.broker.barrier()  # cursors created elsewhere before this call are known here
        with self.lock:
            return self._join(req, document)

    def _join(self, req, document):
        client = req.client
        self.check_identity(client)
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
        self.client_documents.setdefault(client, {})[key] = retained.key_value(key)
        cursors = list(doc.cursors.values())
        remote = self.remote_docs.get(key)
        if remote:  # (a handle given out twice during a Redis outage: ours wins until it moves)
            cursors.extend(cursor for h, (_, cursor) in remote.items() if h not in doc.cursors)
        return {"cursors": cursors}

    @rpc_command
    def leave(self, req, document):
        self.do_leave(req.client, document)

    @rpc_command(lock=False)  # with Redis it waits for the handle's claim, without the lock
    def create_cursor(self, req, private_handle, document, position, status):
        client = req.client
        with self.lock:
            key = self._doc_key(document)
            mine = self.client_documents.get(client)
            if mine is None or key not in mine:
                raise RPCError("Not joined")
            pkey = self._handle_key(private_handle)
            if pkey in self.client_cursors.get(client, ()):
                raise RPCError("Reused handle")
            fields = self._fields(pkey, retained.bounded_json(position), retained.bounded_json(status))
            if self._hook_takes_document:
                self.check_new_cursor_allowed(client, retained.key_to_value(key))
            else:
                self.check_new_cursor_allowed(client)
            if self.replica is None:
                return self._install(client, pkey, key, mine[key], self._new_handle(self.documents[key]),
                                     fields)
        handle, token = self._claim_handle(client, key)
        with self.lock:
            self._reserved.discard((key, handle))
            mine = self.client_documents.get(client)
            if mine is None or key not in mine:  # cannot happen: this connection's calls run in order
                self.broker.release([(self._claim_key(key, handle), token)])
                raise RPCError("Not joined")
            self.tokens[(key, handle)] = token
            handle = self._install(client, pkey, key, mine[key], handle, fields)
        self.broker.flush()  # the cursor reaches Redis before the caller hears back
        return handle

    def _install(self, client, pkey, key, document, handle: int, fields: tuple) -> int:
        doc = self.documents[key]
        cursor = Cursor(None, handle, document, None, None, client, fields, _handle_key=pkey)
        doc.cursors[handle] = cursor
        self.client_cursors.setdefault(client, {})[pkey] = (key, handle)
        self.broadcast(self._others(doc, client), {"type": "cursorAdded", "cursor": cursor})
        if self.replica is not None:
            present(self.replica).add(cursor)
        return handle

    @rpc_command
    def update_cursor(self, req, private_handle, new_data):
        client = req.client
        key, handle = self._owned(client, private_handle)
        if not isinstance(new_data, dict):
            raise RPCError("Invalid params")
        doc = self.documents[key]
        cursor = doc.cursors[handle]
        if "position" in new_data or "status" in new_data:
            old = cursor.json
            (pos, pos_json), (st, st_json) = self._fields(
                _json_key(private_handle),
                retained.bounded_json(new_data["position"]) if "position" in new_data
                else (cursor["position"], old["position"]),
                retained.bounded_json(new_data["status"]) if "status" in new_data
                else (cursor["status"], old["status"]))
            cursor["position"], cursor["status"] = pos, st
            old["position"], old["status"] = pos_json, st_json
        self.broadcast(self._others(doc, client), {"type": "cursorUpdated", "cursor": cursor})
        if self.replica is not None:
            self.replica.add(cursor)

    @rpc_command
    def remove_cursor(self, req, private_handle):
        self.do_remove_cursor(req.client, private_handle)

    # Snorky 0.1's method names (the same commands)
    createCursor = create_cursor
    updateCursor = update_cursor
    removeCursor = remove_cursor

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
        if self.replica is not None:
            self.replica.delete(cursor)
            token = self.tokens.pop((key, handle), "")
            if token:
                self._releases.append((self._claim_key(key, handle), token))

    def _release(self) -> None:
        """Give back the claims of removed cursors (queued by _remove), without waiting."""
        if self._releases:
            pairs, self._releases = self._releases, []
            self.cluster.release(pairs)

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
        self._release()

    def client_disconnected(self, client) -> None:
        with self.lock:
            for key in list(self.client_documents.get(client, ())):
                self._leave(client, key)

    # -- replication (Replica calls these under self.lock) -----------------------------
    @staticmethod
    def fact_key(cursor: dict) -> tuple:
        return (retained.compact_key(_json_key(cursor["document"])), cursor["publicHandle"])

    def local_facts(self) -> list:
        return [cursor for doc in self.documents.values() for cursor in doc.cursors.values()]

    def remote_set(self, origin: str, key: tuple, cursor: dict, old) -> None:
        dkey, handle = key
        # kept as JSON like ours, not as the parsed objects the broker gave us
        cursor["document"] = retained.key_value(dkey)
        for name in ("position", "status"):
            cursor[name] = retained.bounded_json(cursor.get(name))[0]
        self.remote_docs.setdefault(dkey, {})[handle] = (origin, cursor)
        doc = self.documents.get(dkey)
        if doc is not None and handle not in doc.cursors:  # else shadowed by ours until one moves
            kind = "cursorAdded" if old is None else "cursorUpdated"
            self.broadcast(doc.clients, {"type": kind, "cursor": cursor})

    def remote_del(self, origin: str, key: tuple, cursor: dict, event) -> None:
        dkey, handle = key
        remote = self.remote_docs.get(dkey)
        if remote is None or remote.get(handle, (None,))[0] != origin:
            return
        del remote[handle]
        if not remote:
            del self.remote_docs[dkey]
        doc = self.documents.get(dkey)
        if doc is not None and handle not in doc.cursors:
            self.broadcast(doc.clients, {"type": "cursorRemoved",
                                         "cursor": {"publicHandle": handle, "document": cursor["document"]}})

    def replica_event(self, origin: str, event: dict) -> None:
        pass

    def reconnected(self) -> None:
        """After a reconnect (Redis may have restarted empty): claim every handle again;
        a cursor whose handle another process took meanwhile gets a new one."""
        with self.lock:
            for k, token in self.tokens.items():
                if not token:
                    self.tokens[k] = self.cluster.new_claim_token()
            pairs = list(self.tokens.items())
        if not pairs:
            return
        try:
            results = self.cluster.claim_many([(self._claim_key(*k), t) for k, t in pairs])
        except BrokerUnavailable:
            return  # the next reconnect tries again
        for ((key, handle), token), ok in zip(pairs, results):
            if not ok:
                self._move(key, handle, token)

    def _move(self, key: Any, old: int, token: str) -> None:
        """Give a cursor whose handle was lost a new one."""
        counters["cursors_handles_lost"] += 1
        log.warning("%s: a cursor's public handle was taken by another process while Redis "
                    "was unreachable: it gets a new one", self.name)
        owner = None
        with self.lock:
            if self.tokens.get((key, old)) != token:
                return
            del self.tokens[(key, old)]
            for client, mine in self.client_cursors.items():
                for pkey, where in mine.items():
                    if where == (key, old):
                        owner = client, pkey
            if owner is None:
                return
        try:
            handle, new_token = self._claim_handle(owner[0], key)
        except (RPCError, BrokerUnavailable):
            return
        with self.lock:
            self._reserved.discard((key, handle))
            client, pkey = owner
            doc = self.documents.get(key)
            if doc is None or self.client_cursors.get(client, {}).get(pkey) != (key, old):
                self.cluster.release([(self._claim_key(key, handle), new_token)])
                return
            cursor = doc.cursors.pop(old)
            others = self._others(doc, client)
            self.broadcast(others, {"type": "cursorRemoved",
                                    "cursor": {"publicHandle": old, "document": cursor["document"]}})
            present(self.replica).delete(dict(cursor))
            shadowed = self.remote_docs.get(key, {}).get(old)
            if shadowed is not None:  # the other process's cursor under that handle shows now
                self.broadcast(doc.clients, {"type": "cursorAdded", "cursor": shadowed[1]})
            cursor["publicHandle"] = handle
            doc.cursors[handle] = cursor
            self.client_cursors[client][pkey] = (key, handle)
            self.tokens[(key, handle)] = new_token
            self.broadcast(others, {"type": "cursorAdded", "cursor": cursor})
            present(self.replica).add(cursor)

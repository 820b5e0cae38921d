"""Cursors: shared cursors (carets, selections, pointers) on documents (protocol.md §3).

A connection joins a document and creates cursors with its own *private*
handles; everybody else in the document sees them under a *public* handle
(an integer 0..65535, unique within the document) with ``cursorAdded``,
``cursorUpdated`` and ``cursorRemoved``.  A connection never receives
notifications about its own cursors.  Every connection needs an identity.

With a distributed broker (Redis) documents span processes, routed per
document (:mod:`.cursors_routing`): each document's cursors are in a Redis
hash on its shard and its changes travel on its own topic, to the processes
with a client joined to it only.  A process whose first client joins a
document reads the hash (the ``join`` answer waits for it), so a ``join``
answers with the cursors of every process and each process tells its own
connections in the document about cursor changes made anywhere.  A
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
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from .. import wire
from ..brokers.base import BrokerUnavailable
from ..metrics import counters
from . import retained
from .base import LimitAlias, RPCError, RPCService, rpc_command
from .cursors_routing import RemoteCursor, Routed
from .membership import Membership

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..brokers.sharded import RedisLike
    from ..client import Client
    from .base import Request

__all__ = ["CursorsService", "Cursor"]

_json_key = wire.json_key
_random = random.SystemRandom()
log = logging.getLogger("snorky_sync.services.cursors")


def _field(name: str) -> property:
    def get(self: Cursor) -> Any:
        return retained.json_value(self[name], self.json[name])

    def set(self: Cursor, value: Any) -> None:
        self[name], self.json[name] = retained.bounded_json(value)
    return property(get, set)


def present(routed: Routed | None) -> Routed:
    """``routed``, on the paths that only run with a distributed broker."""
    if routed is None:
        raise RuntimeError("this path runs only with a distributed broker")
    return routed


class Cursor(dict[str, Any]):
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
                 status: Any, owner: Client | None, _fields: tuple[Any, ...] | None = None, _handle_key: Any = None) -> None:
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

    def for_json(self) -> dict[Any, Any]:
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
    __slots__ = ("clients", "cursors", "value", "remote", "pending", "routed")

    def __init__(self, clients: dict[Any, Any], value: Any, routed: Routed | None = None) -> None:
        self.clients: dict[Any, None] = clients   # joined connections (the service's Membership's)
        self.cursors: dict[int, Cursor] = {}      # public handle -> cursor
        self.value = value                        # as kept (retained.key_value)
        self.remote: dict[str, RemoteCursor] = {}  # other processes' (cursors_routing.entry_id)
        self.pending: set[Any] = set()            # joined, their answer waiting for the read
        self.routed = routed

    @property
    def local(self) -> dict[int, Any]:
        """Our cursors as entries of the document (PresenceRouting rewrites them)."""
        routed = self.routed
        return {} if routed is None else {h: routed.entry(c) for h, c in self.cursors.items()}

    def remote_handles(self) -> set[int]:
        return {r.cursor["publicHandle"] for r in self.remote.values()}

    def shown_remote(self) -> list[dict[str, Any]]:
        """The other processes' cursors a page sees (ours shadow a handle given out twice)."""
        seen, out = set(self.cursors), []
        for r in self.remote.values():
            handle = r.cursor["publicHandle"]
            if handle not in seen:
                seen.add(handle)
                out.append(r.cursor)
        return out


class CursorsService(RPCService):
    """``join``, ``leave``, ``createCursor``, ``updateCursor``, ``removeCursor``.

    Limits: constructor keywords; the class attributes are the defaults.
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_cursors = 16
    """Cursors per connection, across all its documents (``Too many cursors``)."""
    MAX_CURSORS = LimitAlias("max_cursors")
    """``max_cursors``' name in snorky_sync 0.2."""

    max_documents = 1000
    """Documents joined per connection (``Too many documents``)."""
    max_document_size = 1024
    """Bytes of JSON of a document name (``Document too long``)."""
    max_cursor_size = 4096
    """Bytes of JSON of one cursor's private handle, position and status
    together (``Cursor too large``)."""

    def __init__(self, name: str, *, max_documents: int | None = None,
                 max_document_size: int | None = None, max_cursors: int | None = None,
                 max_cursor_size: int | None = None) -> None:
        """The limits: see the class (None: the class's, or the settings' once mounted)."""
        super().__init__(name)
        self.set_limits(max_documents=max_documents, max_document_size=max_document_size,
                        max_cursors=max_cursors, max_cursor_size=max_cursor_size)
        # Snorky 0.1's hook took (client); this one takes (client, document)
        hook = inspect.signature(self.check_new_cursor_allowed).parameters
        self._hook_takes_document = len(hook) >= 2 or any(
            p.kind is p.VAR_POSITIONAL for p in hook.values())
        self.documents: dict[Any, _Document] = {}
        # the connections in each document here
        self.joined = Membership(self, "max_documents", too_many="Too many documents")
        # client -> {private handle key: (doc key, public handle)}
        self.client_cursors: dict[Any, dict[Any, tuple[Any, int]]] = {}
        self.routed: Routed | None = None  # with a distributed broker (other processes' cursors)
        self.tokens: dict[tuple[Any, int], str] = {}   # (doc key, handle) -> claim token
        self._reserved: set[tuple[Any, int]] = set()   # handles being claimed right now
        self._releases: list[tuple[str, str]] = []     # claims of removed cursors, to give back

    @property
    def client_documents(self) -> dict[Any, set[Any]]:
        """client -> the keys of the documents it joined."""
        return self.joined.of_client

    def use_broker(self, broker: Broker) -> None:
        super().use_broker(broker)
        if broker.distributed and self.routed is None:
            self.routed = Routed(self, cast("RedisLike", broker))

    # -- hooks -----------------------------------------------------------------
    def check_new_cursor_allowed(self, client: Client, document: Any = None) -> None:
        """Raise RPCError to refuse a new cursor.  Default: at most ``max_cursors``
        per connection (``Too many cursors``).  An override may take
        ``(client)`` only, as in Snorky 0.1."""
        if len(self.client_cursors.get(client, ())) >= self.max_cursors:
            raise RPCError("Too many cursors")

    def check_identity(self, client: Client) -> None:
        """Raise ``Not authenticated`` unless the connection has an identity."""
        if client.identity is None:
            raise RPCError("Not authenticated")

    def can_join(self, client: Client, document: Any) -> bool:
        """Hook: may ``client`` (which has an identity) join ``document``,
        seeing its cursors?  Default: yes.  Asked before anything changes,
        without the service's lock (it may wait on a database); a refusal
        answers ``Not authorized``."""
        return True

    def check_join(self, client: Client, document: Any) -> None:
        """Raise ``Not authenticated`` / ``Not authorized`` unless ``client``
        may join ``document``."""
        self.check_identity(client)
        if not self.can_join(client, document):
            counters["cursors_joins_refused"] += 1
            raise RPCError("Not authorized")

    def do_leave(self, client: Client, document: Any) -> None:
        """Make ``client`` leave ``document``, removing its cursors there (as the
        ``leave`` command; call it under ``self.lock``)."""
        key = self._doc_key(document)
        if not self.joined.has(client, key):
            raise RPCError("Not joined")
        self._leave(client, key)

    def do_remove_cursor(self, client: Client, private_handle: Any) -> None:
        """Remove one of ``client``'s cursors (as ``removeCursor``; under ``self.lock``)."""
        key, handle = self._owned(client, private_handle)
        self._remove(client, _json_key(private_handle), key, handle)
        self._release()

    # -- helpers -----------------------------------------------------------------
    def _doc_key(self, document: Any) -> Any:
        return retained.bounded_key(document, self.max_document_size, "Document too long")

    def _handle_key(self, private_handle: Any) -> Any:
        return retained.bounded_key(private_handle, self.max_cursor_size, "Cursor too large")

    def _fields(self, pkey: Any, pos: tuple[Any, ...], st: tuple[Any, ...]) -> tuple[Any, ...]:
        """``(pos, st)``, the kept forms of a cursor's position and status
        (from :func:`.retained.bounded_json`), or ``Cursor too large`` when
        they and the private handle exceed ``max_cursor_size`` together."""
        if retained.key_size(pkey) + len(pos[1]) + len(st[1]) > self.max_cursor_size:
            raise RPCError("Cursor too large")
        return pos, st

    def _others(self, doc: _Document, client: Client | None) -> list[Client]:
        """``doc``'s clients but ``client`` and those whose ``join`` answer is not out yet."""
        pending = doc.pending
        return [c for c in doc.clients if c is not client and c not in pending]

    def show(self, doc: _Document, msg: dict[str, Any]) -> None:
        """Tell ``doc``'s clients (whose ``join`` was answered) ``msg``."""
        self.broadcast(self._others(doc, None), msg)

    def _new_handle(self, doc: _Document, key: Any = None) -> int:
        if self.routed is None:
            if len(doc.cursors) >= 65536:
                raise RPCError("Too many cursors")
            while True:
                handle = _random.randrange(65536)
                if handle not in doc.cursors:
                    return handle
        remote = doc.remote_handles()
        if len(doc.cursors) + len(remote) + len(self._reserved) >= 65536:
            raise RPCError("Too many cursors")
        while True:
            handle = _random.randrange(65536)
            if handle not in doc.cursors and handle not in remote and (key, handle) not in self._reserved:
                return handle

    def _claim_key(self, key: Any, handle: int) -> str:
        digest = hashlib.sha1(wire.key_to_bytes(key)).hexdigest()
        return f"cursors:{self.name}:{digest}:{handle}"

    def _claim_handle(self, client: Client, key: Any) -> tuple[int, str]:
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

    def _owned(self, client: Client, private_handle: Any) -> tuple[Any, int]:
        found = self.client_cursors.get(client, {}).get(_json_key(private_handle))
        if found is None:
            raise RPCError("No such cursor")
        return found

    # -- commands ------------------------------------------------------------------
    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def join(self, req: Request, document: Any) -> Any:
        self.check_identity(req.client)  # 0.1's order: Not authenticated, then Document too long
        self._doc_key(document)
        self.check_join(req.client, document)  # before it is a member and sees any cursor
        routed = self.routed
        if routed is None:
            with self.lock:
                return self._join(req, document)
        self.cluster.barrier()  # cursors created elsewhere before this call are known here
        with self.lock:
            doc = self._enter(req.client, document)
            if not routed.loading(doc):
                return self._answer(doc)
            doc.pending.add(req.client)  # its first client here: told nothing until answered
        try:
            routed.wait_loaded(doc)  # the document's cursors read from Redis
        finally:
            with self.lock:
                doc.pending.discard(req.client)
        with self.lock:
            return self._answer(doc)

    def _join(self, req: Request, document: Any) -> dict[str, Any]:
        return self._answer(self._enter(req.client, document))

    def _enter(self, client: Client, document: Any) -> _Document:
        self.check_identity(client)
        key = self._doc_key(document)
        if not self.joined.add(client, key):
            raise RPCError("Already joined")
        doc = self.documents.get(key)
        if doc is None:
            doc = self.documents[key] = _Document(self.joined.members[key], retained.key_value(key), self.routed)
            if self.routed is not None:  # subscribe, read the others' cursors
                self.routed.joined(key, doc)
        return doc

    @staticmethod
    def _answer(doc: _Document) -> dict[str, Any]:
        cursors: list[dict[str, Any]] = list(doc.cursors.values())
        if doc.remote:  # (a handle given out twice during a Redis outage: ours wins until it moves)
            cursors.extend(doc.shown_remote())
        return {"cursors": cursors}

    @rpc_command
    def leave(self, req: Request, document: Any) -> None:
        self.do_leave(req.client, document)

    @rpc_command(lock=False)  # with Redis it waits for the handle's claim, without the lock
    def create_cursor(self, req: Request, private_handle: Any, document: Any, position: Any,
                      status: Any) -> int:
        client = req.client
        with self.lock:
            key = self._doc_key(document)
            if not self.joined.has(client, key):
                raise RPCError("Not joined")
            pkey = self._handle_key(private_handle)
            if pkey in self.client_cursors.get(client, ()):
                raise RPCError("Reused handle")
            fields = self._fields(pkey, retained.bounded_json(position), retained.bounded_json(status))
            if self._hook_takes_document:
                self.check_new_cursor_allowed(client, retained.key_to_value(key))
            else:
                self.check_new_cursor_allowed(client)
            if self.routed is None:
                return self._install(client, pkey, key, self._new_handle(self.documents[key]), fields)
        handle, token = self._claim_handle(client, key)
        with self.lock:
            self._reserved.discard((key, handle))
            if not self.joined.has(client, key):  # cannot happen: this connection's calls run in order
                self.cluster.release([(self._claim_key(key, handle), token)])
                raise RPCError("Not joined")
            self.tokens[(key, handle)] = token
            handle = self._install(client, pkey, key, handle, fields)
        present(self.routed).routing.flush()  # the cursor reaches Redis before the caller hears back
        return handle

    def _install(self, client: Client, pkey: Hashable, key: Hashable, handle: int, fields: tuple[Any, ...]) -> int:
        doc = self.documents[key]
        cursor = Cursor(None, handle, doc.value, None, None, client, fields, _handle_key=pkey)
        doc.cursors[handle] = cursor
        self.client_cursors.setdefault(client, {})[pkey] = (key, handle)
        self.broadcast(self._others(doc, client), {"type": "cursorAdded", "cursor": cursor})
        if self.routed is not None:
            self.routed.write(key, doc, cursor)
        return handle

    @rpc_command
    def update_cursor(self, req: Request, private_handle: Any, new_data: Any) -> None:
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
        if self.routed is not None:
            self.routed.write(key, doc, cursor)

    @rpc_command
    def remove_cursor(self, req: Request, private_handle: Any) -> None:
        self.do_remove_cursor(req.client, private_handle)

    # Snorky 0.1's method names (the same commands)
    createCursor = create_cursor
    updateCursor = update_cursor
    removeCursor = remove_cursor

    # -- state changes ---------------------------------------------------------------
    def _remove(self, client: Client, pkey: Hashable, key: Hashable, handle: Any) -> None:
        mine = self.client_cursors[client]
        del mine[pkey]
        if not mine:
            del self.client_cursors[client]
        doc = self.documents[key]
        cursor = doc.cursors.pop(handle)
        self.broadcast(self._others(doc, client), {
            "type": "cursorRemoved", "cursor": {"publicHandle": handle, "document": cursor["document"]}})
        if self.routed is not None:
            self.routed.erase(key, doc, handle)
            token = self.tokens.pop((key, handle), "")
            if token:
                self._releases.append((self._claim_key(key, handle), token))

    def _release(self) -> None:
        """Give back the claims of removed cursors (queued by _remove), without waiting."""
        if self._releases:
            pairs, self._releases = self._releases, []
            self.cluster.release(pairs)

    def _leave(self, client: Client, key: Hashable) -> None:
        for pkey, (dkey, handle) in list(self.client_cursors.get(client, {}).items()):
            if dkey == key:
                self._remove(client, pkey, dkey, handle)
        self.joined.drop(client, key)
        if key not in self.joined.members:  # its last connection here left
            doc = self.documents.pop(key)
            if self.routed is not None:  # its other processes' cursors forgotten with it
                self.routed.dropped(key, doc)
        self._release()

    def client_disconnected(self, client: Client) -> None:
        with self.lock:
            for key in list(self.joined.keys_of(client)):
                self._leave(client, key)

    # -- across processes --------------------------------------------------------------
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
            routed = present(self.routed)
            routed.erase(key, doc, old)
            shadowed = next((r.cursor for r in doc.remote.values() if r.cursor["publicHandle"] == old), None)
            if shadowed is not None:  # the other process's cursor under that handle shows now
                self.show(doc, {"type": "cursorAdded", "cursor": shadowed})
            cursor["publicHandle"] = handle
            doc.cursors[handle] = cursor
            self.client_cursors[client][pkey] = (key, handle)
            self.tokens[(key, handle)] = new_token
            self.broadcast(others, {"type": "cursorAdded", "cursor": cursor})
            routed.write(key, doc, cursor)

"""Cursors across processes, per document: presence's routing, reused.

With a distributed broker :class:`~.cursors.CursorsService` hands its
documents to a :class:`~.presence_routing.PresenceRouting` (the machinery
of presence per channel), a document being a channel and each cursor an
entry of it:

* State: one hash per document, ``snorky:presence:cursors:NAME:<32 hex>``
  on the document's shard (placed by its own topic), one field per cursor,
  ``<public handle>.<origin hex>``, valued ``<origin hex><[owner, [position, status]]>``.
* Changes: a cursor created, updated or removed is written to the hash and
  published on the document's topic (``cursors:NAME:<32 hex>``) in one
  script; only the processes with a client joined to the document are
  subscribed to it.
* A process whose first client joins a document subscribes, and once Redis
  confirmed it reads the hash (its marker in the stream of changes); the
  ``join`` answer waits for that read, so it lists the document's cursors
  exactly as a process-wide replica did.
* Dead processes' cursors are skipped (and deleted) by the read and dropped
  when the broker says the process is gone (``cursorRemoved``); when a
  shard comes back each process writes its cursors there again.

Public handles are still claimed in Redis one by one
(:meth:`~snorky_sync.brokers.base.Broker.claim`), unique per document
across processes; :meth:`Routed.broker_connected` re-asserts the claims
after a reconnect, as the replica did.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

import gevent

from .. import wire
from ..brokers.base import PeerListener
from . import retained
from .presence_routing import PresenceRouting

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.sharded import RedisLike
    from .cursors import CursorsService, _Document
    from .presence import Presence, _Channel

__all__ = ["Routed", "RemoteCursor", "entry_id", "handle_of"]


def entry_id(handle: int, origin: str) -> str:
    """A cursor's field in its document's hash (unique even for a handle two
    processes gave out while Redis was unreachable)."""
    return f"{handle}.{origin}"


def handle_of(cid: str) -> int:
    return int(cid.partition(".")[0])


class RemoteCursor:
    """Another process's cursor in a document joined here."""

    __slots__ = ("origin", "cursor", "data")

    def __init__(self, origin: str, cursor: dict[str, Any], data: bytes) -> None:
        self.origin = origin    # the process that holds it (hex)
        self.cursor = cursor    # as sent to the pages
        self.data = data        # its [position, status] as JSON: a change or not


class LocalCursor:
    """One of this process's cursors, as an entry (what PresenceRouting rewrites)."""

    __slots__ = ("client", "identity", "meta")

    def __init__(self, client: str, identity: Any, meta: Any) -> None:
        self.client, self.identity, self.meta = client, identity, meta


class Routed(PeerListener):
    """What :class:`~.presence_routing.PresenceRouting` needs of its presence,
    for ``service``'s documents (called under ``service.lock``)."""

    def __init__(self, service: CursorsService, broker: RedisLike) -> None:
        self.service = service
        self.lock = service.lock
        self.channels = service.documents  # key -> _Document: those with a client here
        self.origin = broker.origin.hex()
        family = f"cursors:{service.name}"
        self.routing = PresenceRouting(cast("Presence", self), broker, family, own_family=family)
        broker.add_listener(self)

    # -- this process's cursors (under the lock) -----------------------------------------
    def entry(self, cursor: dict[str, Any]) -> LocalCursor:
        return LocalCursor(entry_id(cursor["publicHandle"], self.origin), cursor["owner"],
                           [cursor["position"], cursor["status"]])

    def joined(self, key: Hashable, doc: _Document) -> None:
        """``doc``'s first client here: subscribe and read its cursors."""
        self.routing.interest(key, cast("_Channel", doc))

    def dropped(self, key: Hashable, doc: _Document) -> None:
        """``doc``'s last client here left."""
        self.routing.uninterest(key, cast("_Channel", doc))

    def write(self, key: Hashable, doc: _Document, cursor: dict[str, Any]) -> None:
        e = self.entry(cursor)
        self.routing.write(key, e.client, e.identity, e.meta, doc.value)

    def erase(self, key: Hashable, doc: _Document, handle: int) -> None:
        self.routing.erase(key, entry_id(handle, self.origin), doc.value)

    def loading(self, doc: _Document) -> bool:
        return cast("_Channel", doc) in self.routing.loading

    def wait_loaded(self, doc: _Document) -> None:
        """Until ``doc`` was read (or given up), without the lock."""
        self.routing.wait_loaded(cast("_Channel", doc))

    # -- the other processes' cursors (PresenceRouting calls these under the lock) -------
    def remote_set(self, doc: _Document, cid: str, origin: str, identity: Any, meta: Any) -> None:
        position, status = meta if isinstance(meta, list) and len(meta) == 2 else (None, None)
        data = wire.encode([position, status])
        was = doc.remote.get(cid)
        if was is not None and was.data == data:
            return  # (a read repeating what the changes told)
        handle = handle_of(cid)
        cursor = {"publicHandle": handle, "document": doc.value,
                  "position": retained.bounded_json(position)[0],
                  "status": retained.bounded_json(status)[0], "owner": identity}
        doc.remote[cid] = RemoteCursor(origin, cursor, data)
        if handle not in doc.cursors:  # else shadowed by ours until one moves
            self.service.show(doc, {"type": "cursorAdded" if was is None else "cursorUpdated",
                                    "cursor": cursor})

    def remote_del(self, doc: _Document, cid: str) -> None:
        gone = doc.remote.pop(cid, None)
        if gone is None:
            return
        handle = gone.cursor["publicHandle"]
        if handle in doc.cursors:
            return
        other = next((r for r in doc.remote.values() if r.cursor["publicHandle"] == handle), None)
        if other is not None:  # (a handle given out twice during an outage: the other shows)
            self.service.show(doc, {"type": "cursorUpdated", "cursor": other.cursor})
        else:
            self.service.show(doc, {"type": "cursorRemoved",
                                    "cursor": {"publicHandle": handle, "document": doc.value}})

    def loaded(self, doc: _Document) -> None:
        """(The ``join`` answers are made after the read: nothing to complete.)"""

    # -- broker listener -----------------------------------------------------------------
    def broker_connected(self) -> None:
        gevent.spawn(self.service.reconnected)  # claim every handle again

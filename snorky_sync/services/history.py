"""Channel history for PubSub and Chat: offsets, an epoch, recovery.

Used by PubSub and Chat when a service is created with ``history_size``
(:class:`ChannelHistory`, one per service).  Every message of a channel gets
an ``offset`` (1 for the first, contiguous) and carries the channel's
``epoch`` (a random string that changes whenever the channel's history is
lost).  A client that knows ``(offset, epoch)`` of the last message it saw
asks for what followed; the answer is every later message, in order, or
"not recoverable" (other epoch, or the history no longer reaches back).

Where the messages are kept is the broker's :meth:`history store
<snorky_sync.brokers.base.Broker.history_store>` (:mod:`snorky_sync.brokers.history`):
in this process, or in Redis with a distributed broker, where one Lua script
assigns the offset and publishes the message so every process delivers a
channel in offset order and a client that comes back on another process
recovers from the same history.  What is kept per message is the envelope's
JSON text with ``offset`` and ``epoch`` in it: replaying sends the very bytes
that were sent live.

Continuity across a lost broker connection (Redis mode): each process keeps,
per channel it has members of, the offset it last delivered
(:class:`_Track`).  A message that does not follow it (a jump: publications
missed while the process's Redis connection was down), or any reconnect of
the broker's listener (a failover, a deaf-listener restart, a blip), makes
the process read the channel's history and deliver what its members missed,
in order and once; when the history no longer covers it (or Redis lost
writes and reuses offsets: the channel then gets a new epoch) the members
are sent ``{"type": "gap", "channel", "offset", "epoch"}`` instead, and
recover with ``since`` (snorky.js does it by itself).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from .. import checks, wire
from ..brokers.base import BrokerUnavailable, PeerListener
from ..brokers.history import HistoryStore, LocalHistory, idempotent_append, new_epoch
from ..logs import RateLimitedLogger
from ..metrics import counters
from .base import RPCError
from .retained import key_value

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Service
    from .membership import Membership

__all__ = ["ChannelHistory", "LiveGate", "envelope_head", "recoverable_entries", "configured",
           "new_epoch"]  # new_epoch: DataSync's epochs too

_warn = RateLimitedLogger(logging.getLogger("snorky_sync.services"))


def envelope_head(service: str, message: dict[Any, Any]) -> bytes:
    """The envelope's JSON without its closing ``}}``: offset and epoch are
    appended after the message's last field (``..., "offset": N, "epoch": E}}``)."""
    raw = wire.encode({"service": service, "message": message})
    return raw[:-2]


def recoverable_entries(entries: list[tuple[int, bytes]], current: int, epoch: str,
                        since: Any) -> list[tuple[int, bytes]] | None:
    """The entries after ``since`` (``{"offset", "epoch"}``), or None when the
    gap cannot be filled (other epoch, entries gone, offset from the future)."""
    if not isinstance(since, dict):
        return None
    offset, their_epoch = since.get("offset"), since.get("epoch")
    if type(offset) is not int or offset < 0 or their_epoch != epoch or offset > current:
        return None
    if offset == current:
        return []
    if not entries or entries[0][0] > offset + 1:
        return None
    return [e for e in entries if e[0] > offset]


def epoch_of(env: bytes) -> str:
    """The epoch of a stored envelope, or of a frame of one (its last field:
    see ``finish_envelope``)."""
    start = env.rindex(b'"epoch":"') + 9
    return env[start:env.index(b'"', start)].decode()


class _Track:
    """Where this process is in one channel it has members of: the ``epoch``
    and ``offset`` of the last message it delivered, that message's
    ``digest`` (to tell it from another message given the same offset by a
    Redis that lost writes; None: unknown), and ``fresh``: the position came
    from a history read, so live messages up to it, still in flight, are
    already delivered (else a live message at or below it is an offset
    reused)."""

    __slots__ = ("epoch", "offset", "digest", "fresh")

    def __init__(self, epoch: str, offset: int, digest: int | None, fresh: bool) -> None:
        self.epoch = epoch
        self.offset = offset
        self.digest = digest
        self.fresh = fresh


def _digest_at(entries: list[tuple[int, bytes]], offset: int) -> int | None:
    """The digest of the entry at ``offset`` in ``entries`` (contiguous), or None."""
    if entries:
        i = offset - entries[0][0]
        if 0 <= i < len(entries):
            return hash(entries[i][1])
    return None


def configured(owner: str, size: Any, ttl: Any) -> tuple[int, float]:
    """A service's ``history_size`` and ``history_ttl`` arguments, checked
    (:mod:`snorky_sync.checks`, naming ``owner``): ``(size, ttl)``; size 0
    means no history."""
    return (checks.count(f"{owner}(history_size=...)", size),
            checks.seconds(f"{owner}(history_ttl=...)", ttl, above=True))


def frames(entries: Iterable[tuple[int, bytes]]) -> list[bytes]:
    """WebSocket frames of stored envelopes."""
    return [wire.frame_text(env) for _, env in entries]


class ChannelHistory:
    """The history of a service's channels, and the recovery of a client
    entering one (PubSub's ``subscribe``, Chat's ``join``).

    ``members``: the service's :class:`~.membership.Membership` of channel
    keys (who gets a channel's live messages here); ``counter``: the prefix
    of the counters (``<counter>_recoveries``, ``_recoveries_failed``,
    ``_history_unavailable``).  Until :meth:`use_broker` gives it a
    distributed broker's store, the history is kept in this process.

    In this process the history and live delivery are both under the
    service's lock, so nothing slips between a read and the next message.
    With Redis they are not: :meth:`enter` holds the client's live messages
    (:class:`LiveGate`) from before the read until after it, then sends those
    newer than the read.
    """

    __slots__ = ("service", "members", "counter", "size", "ttl", "store", "gate", "sizes", "tracks",
                 "pending", "resyncer")

    def __init__(self, service: Service, members: Membership, counter: str, size: int, ttl: float) -> None:
        self.service = service
        self.members = members
        self.counter = counter
        self.size = size
        self.ttl = ttl
        self.store: HistoryStore = LocalHistory(size, ttl)
        self.gate = LiveGate()  # clients recovering a channel (distributed store)
        #: a channel's own size, from its key (channel namespaces'
        #: ``history_size``); None: ``size`` for every channel
        self.sizes: Callable[[Hashable], int] | None = None
        # continuity (distributed store): see the module's docstring
        self.tracks: dict[Hashable, _Track] = {}   # channel -> where this process is
        self.pending: set[Hashable] = set()        # channels to read again (live ones dropped meanwhile)
        self.resyncer: gevent.Greenlet | None = None

    @property
    def distributed(self) -> bool:
        """True when the store publishes the messages (then they come back
        through :meth:`deliver`)."""
        return self.store.distributed

    def use_broker(self, broker: Broker, namespace: str, family: str) -> None:
        """With a distributed broker, keep the history in its store (shared by
        every process), which publishes on the channel topics of ``family``:
        the service routes them (with echo: this process's messages come
        back too) to a handler that gives the store's messages to
        :meth:`deliver`."""
        if broker.distributed:
            self.store = broker.history_store(namespace, family, self.size, self.ttl)
            broker.add_listener(_Reconnects(self))

    def idempotency_place(self, key: Hashable) -> str | None:
        """Where an ``idempotencyKey``'s claim on channel ``key`` is to be
        placed so that the store's append records its answer in the same
        Redis script as it publishes (:mod:`snorky_sync.services.idempotency`):
        the channel's topic with the Redis store, else None."""
        place = getattr(self.store, "place", None)
        return place(key) if self.store.distributed and place is not None else None

    def unavailable(self) -> RPCError:
        counters[f"{self.counter}_history_unavailable"] += 1
        return RPCError("History unavailable")

    # -- messages -----------------------------------------------------------------------
    def append(self, key: Hashable, message: dict[Any, Any]) -> bytes | None:
        """Number and keep ``message`` (a notification of channel ``key``).
        In this process (call it under the service's lock): returns its frame,
        for the caller to deliver to the channel's members here.  Distributed
        (call it without the lock: it waits for Redis): the store published
        it to every process, this one included (:meth:`deliver`): returns
        None.  ``RPCError("History unavailable")`` when Redis cannot be reached."""
        head = envelope_head(self.service.name, message)
        store = self.store
        size = self.sizes(key) if self.sizes is not None else None
        if not store.distributed:
            return wire.frame_text(store.append(key, head, size)[2])
        try:
            store.append(key, head, size)  # published by Redis, in offset order
        except BrokerUnavailable:
            raise self.unavailable() from None
        return None

    #: seconds a publish with ``excludeSender`` waits for its message to
    #: come back through Redis, where its answer takes the message's place
    exclude_wait = 5.0

    def append_from(self, key: Hashable, message: dict[Any, Any], sender: Client,
                    reply: Callable[[dict[str, Any]], None]) -> None:
        """:meth:`append` for a publish with ``excludeSender`` (call it
        without the lock): every member of ``key`` gets ``message`` but
        ``sender``, and ``reply({"offset", "epoch"})`` (the message's) is
        called once, under the service's lock, where the message would have
        been in ``sender``'s stream: ``sender`` sees every offset once, in
        order, its own as that answer.  Distributed, the message comes back
        through Redis like every other (:meth:`deliver`), and the answer is
        sent there; when it does not come back within :attr:`exclude_wait`
        seconds (the broker connection lost) it is sent then."""
        head = envelope_head(self.service.name, message)
        store = self.store
        size = self.sizes(key) if self.sizes is not None else None
        lock = self.service.lock
        if not store.distributed:
            with lock:
                offset, epoch, env = store.append(key, head, size)
                frame = wire.frame_text(env)
                self.service.broadcast_frame(
                    [c for c in self.members.clients(key) if c is not sender], frame)
                reply({"offset": offset, "epoch": epoch})
            return
        entry = None
        with lock:
            if self.members.has(sender, key):  # else no stream of it to keep in order
                entry = _Excluded(sender, head, reply)
                self.gate.exclude(key, entry)
        claim = idempotent_append.get()
        if claim is not None:  # an idempotencyKey's: this publish is answered {offset, epoch}
            claim.offset_answer = True
        try:
            offset, epoch, _ = store.append(key, head, size)
        except BaseException as exc:  # not appended (or answered already: AlreadyAnswered)
            if entry is not None:
                with lock:
                    self.gate.unexclude(key, entry)
            if isinstance(exc, BrokerUnavailable):
                raise self.unavailable() from None
            raise
        if entry is None:
            reply({"offset": offset, "epoch": epoch})
            return
        with lock:
            if entry.offset is None:
                entry.offset = offset
        entry.event.wait(self.exclude_wait)
        with lock:
            if not entry.answered:  # its way back lost, or the sender left the channel
                self.gate.unexclude(key, entry)
                entry.answered = True
                reply({"offset": offset, "epoch": epoch})

    def deliver(self, data: bytes) -> None:
        """A message the distributed store published (every process's, ours
        included): to the channel's members here, but those recovering it."""
        key, offset, env = self.store.unpack(data)  # type: ignore[attr-defined]
        frame = wire.frame_text(env)
        service = self.service
        with service.lock:
            clients = self.members.clients(key)
            if not clients:
                self.tracks.pop(key, None)
            elif self._follows(key, offset, env):
                service.broadcast_frame(self.gate.recipients(key, offset, frame, clients), frame)

    # -- continuity across a lost broker connection ----------------------------------------
    def _follows(self, key: Hashable, offset: int, env: bytes) -> bool:
        """Under the lock: True when the live message ``offset`` of ``key``
        is the next this process delivers (its position moves on); False
        when it is not to be delivered: already delivered, or after a gap
        (the channel is then read again: :meth:`_resync`)."""
        track = self.tracks.get(key)
        if track is None:  # the channel's first message here: its members' reads placed them
            if len(self.tracks) > 2 * len(self.members.members) + 64:
                self._sweep()
            self.tracks[key] = _Track(epoch_of(env), offset, hash(env), False)
            return True
        if key in self.pending:
            return False  # the coming read delivers it (or says it is gone)
        epoch = epoch_of(env)
        if epoch == track.epoch:
            if offset == track.offset + 1:
                track.offset, track.digest, track.fresh = offset, hash(env), False
                return True
            if offset <= track.offset and (track.fresh or offset < track.offset or
                                           track.digest in (None, hash(env))):
                return False  # delivered already (or in flight when the history was read: from it)
        elif offset == 1:  # a new epoch's first message: nothing of it missed
            track.epoch, track.offset, track.digest, track.fresh = epoch, 1, hash(env), False
            return True
        # a jump (missed while the connection was down), another epoch, or
        # the last offset given to another message (Redis lost writes): read
        # the channel again
        counters[f"{self.counter}_continuity_breaks"] += 1
        self._schedule(key)
        return False

    def _sweep(self) -> None:
        members = self.members.members
        for key in [k for k in self.tracks if not members.get(k)]:
            del self.tracks[key]

    def _schedule(self, key: Hashable) -> None:
        """Under the lock: read ``key``'s history again (live messages of it
        are dropped until then: the read has them)."""
        self.pending.add(key)
        if self.resyncer is None:
            self.resyncer = gevent.spawn(self._resync_all)

    def reconnected(self, covers: Callable[[str], bool] | None = None) -> None:
        """The broker's listener (re)connected: publications of every channel
        it carries (``covers(topic)``, None: all: see
        :meth:`~snorky_sync.brokers.base.PeerListener.channels_reconnected`)
        may have been missed meanwhile; read them all again."""
        with self.service.lock:
            self._sweep()
            for key in self.tracks:
                if covers is None or covers(self.members.topic(key)):
                    self._schedule(key)

    def _resync_all(self) -> None:
        backoff = 0.1
        try:
            while self.pending:
                key = next(iter(self.pending))
                try:
                    self._resync(key)
                    backoff = 0.1
                except BrokerUnavailable:  # away again: retried (the next reconnect too)
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception:
                    _warn.exception("history-resync", "history: reading a channel of %s again failed",
                                    self.service.name)
                    with self.service.lock:
                        self.pending.discard(key)
                        self.tracks.pop(key, None)
        finally:
            self.resyncer = None

    def _resync(self, key: Hashable) -> None:
        """Read ``key``'s history and deliver what this process's members
        missed since its position, or send them a gap notification."""
        store = self.store
        if not self.members.confirm(key):  # live messages reach us from now on
            raise BrokerUnavailable("subscription not confirmed")
        current, epoch, entries = store.read(key)
        with self.service.lock:
            track = self.tracks.get(key)
            lost = (track is not None and epoch == track.epoch and self.members.clients(key) and
                    (current < track.offset or (track.digest is not None and
                                                _digest_at(entries, track.offset) not in
                                                (None, track.digest))))
        if lost:  # Redis lost writes (a failover): the offsets it gives again are not ours
            assert track is not None
            counters[f"{self.counter}_epochs_renewed"] += 1
            store.renew(key, epoch)  # type: ignore[attr-defined]
            current, epoch, entries = store.read(key)
        service = self.service
        with service.lock:
            self.pending.discard(key)
            track = self.tracks.get(key)
            clients = self.members.clients(key)
            if not clients:
                self.tracks.pop(key, None)
                return
            digest = _digest_at(entries, current)
            if track is None:
                self.tracks[key] = _Track(epoch, current, digest, True)
                return
            missed = None if lost else recoverable_entries(
                entries, current, epoch, {"offset": track.offset, "epoch": track.epoch})
            if missed is None:
                counters[f"{self.counter}_gaps"] += 1
                holding = self.gate.holding.get(key) or {}  # those recovering learn it from their read
                frame = wire.encode_frame(service.name, {"type": "gap", "channel": key_value(key),
                                                         "offset": current, "epoch": epoch})
                service.broadcast_frame([c for c in clients if c not in holding], frame)
            else:
                counters[f"{self.counter}_gaps_filled"] += bool(missed)
                for offset, env in missed:
                    frame = wire.frame_text(env)
                    service.broadcast_frame(self.gate.recipients(key, offset, frame, clients), frame)
            track.epoch, track.offset, track.digest, track.fresh = epoch, current, digest, True

    # -- a client entering a channel ------------------------------------------------------
    def enter(self, client: Client, add: Callable[[], tuple[Any, dict[Any, Any] | None]], since: Any = None,
              recent: int | None = None, confirm: Callable[[Any], bool] | None = None,
              undo: Callable[[], Any] | None = None, gone: str = "Not subscribed") -> dict[Any, Any]:
        """Put ``client`` in a channel and answer its position there.

        ``add()`` (under the service's lock) puts it in (raising RPCError to
        refuse) and returns the channel's key and the answer so far (or
        None); the answer gets ``offset`` and ``epoch``, and with ``since``
        the messages after it are sent first and ``recovered`` says whether
        they all could be (else none are); with ``recent`` (and no
        ``since``) the last ``recent`` messages are sent first.

        Distributed: the client's live messages of the channel are held while
        ``confirm(key)`` (without the lock; default: the membership's) waits
        until they reach this process and the history is read; then the held
        ones newer than the read are sent and the answer's offset is the
        client's.  When Redis cannot be reached: ``undo()`` (under the lock)
        and ``History unavailable``; when the client left meanwhile: ``gone``.
        """
        lock = self.service.lock
        store = self.store
        if not store.distributed:
            with lock:  # publishes take the lock too: nothing slips between
                key, answer = add()
                current, epoch, entries = store.read(key)
                return self._answer(client, answer or {}, since, recent, current, epoch, entries)
        gate = self.gate
        with lock:
            key, answer = add()
            answer = answer or {}
            gate.hold(key, client)
        try:
            # live messages reach us before the read: none falls between the two
            if not (confirm or self.members.confirm)(key):
                raise BrokerUnavailable("subscription not confirmed")
            current, epoch, entries = store.read(key)
        except BrokerUnavailable:
            with lock:
                gate.forget(key, client)
                if undo is not None:
                    undo()
            raise self.unavailable() from None
        with lock:
            held = gate.release(key, client)
            if held is None:  # the client left meanwhile
                raise RPCError(gone)
            self._answer(client, answer, since, recent, current, epoch, entries)
            answer["offset"] = last = self._send_newer(client, key, held, current)
            if key not in self.tracks:  # no message here yet: the process is where the read was
                self.tracks[key] = _Track(epoch, last, _digest_at(entries, last), True)
        return answer

    def _answer(self, client: Client, answer: dict[Any, Any], since: Any, recent: int | None, current: int,
                epoch: str, entries: list[tuple[int, bytes]]) -> dict[Any, Any]:
        """``answer`` with ``offset`` and ``epoch``, and with ``since`` the
        entries after it sent to ``client`` first and ``recovered`` (counted);
        with ``recent`` instead, the last ``recent`` entries sent first."""
        if since is None:
            if recent:  # a page opening a chat room: its last lines
                for frame in frames(entries[-recent:]):
                    client.send_frame(frame)
            answer.update(offset=current, epoch=epoch)
            return answer
        missed = recoverable_entries(entries, current, epoch, since)
        answer.update(offset=current, epoch=epoch, recovered=missed is not None)
        counters[f"{self.counter}_recoveries" if missed is not None
                 else f"{self.counter}_recoveries_failed"] += 1
        for frame in frames(missed or ()):
            client.send_frame(frame)
        return answer

    def _send_newer(self, client: Client, key: Hashable, held: list[Any], current: int) -> int:
        """After a read that reached offset ``current``: send the live messages
        held meanwhile that are newer, and let the client catch up from the
        last one; returns the client's offset."""
        last = current
        for offset, frame in held:
            if offset > last:
                client.send_frame(frame)
                last = offset
        self.gate.catch_up(key, client, last)
        return last

    def recover(self, client: Client, key: Hashable, since: Any,
                confirm: Callable[[Any], bool] | None = None, gone: str = "Not subscribed") -> dict[Any, Any]:
        """``client``, already in ``key``, asks for what followed ``since``
        (a gap it noticed, or a ``gap`` notification): as :meth:`enter`
        with ``since``, without entering again (``gone`` when it is not in)."""
        def add() -> tuple[Any, dict[Any, Any] | None]:
            if not self.members.has(client, key):
                raise RPCError(gone)
            return key, None
        return self.enter(client, add, since, confirm=confirm, gone=gone)

    def forget(self, key: Hashable, client: Client) -> None:
        """``client`` left ``key`` (under the lock)."""
        self.gate.forget(key, client)
        if not self.members.clients(key):
            self.tracks.pop(key, None)

    def forget_client(self, client: Client) -> None:
        """``client`` is gone (under the lock)."""
        self.gate.forget_client(client)


class LiveGate:
    """Keeps live history messages from clients that are recovering a channel
    (Redis mode, where a history read and live delivery are not atomic).

    ``hold(key, client)`` before reading the history: live messages for it
    are kept aside; ``release(key, client)`` after: the kept ones (to send
    those newer than what the read had); ``catch_up(key, client, last)``:
    until a message newer than ``last`` arrives, older ones (in flight from
    Redis, already in the read) are not sent to it.  Callers hold the
    service lock.  When nobody is recovering, :meth:`recipients` costs one
    dict lookup.
    """

    __slots__ = ("holding", "waiting", "excluded")

    def __init__(self) -> None:
        self.holding: dict[Hashable, dict[Client, list[Any]]] = {}  # key -> {client: [(offset, frame)]}
        self.waiting: dict[Hashable, dict[Client, int]] = {}        # key -> {client: last offset it got}
        self.excluded: dict[Hashable, list[_Excluded]] = {}         # key -> publishes excluding their sender

    def exclude(self, key: Hashable, entry: _Excluded) -> None:
        """``entry.client``'s publish to ``key`` (``excludeSender``) is on
        its way: its message is not for it (:meth:`recipients` answers it)."""
        self.excluded.setdefault(key, []).append(entry)

    def unexclude(self, key: Hashable, entry: _Excluded) -> None:
        entries = self.excluded.get(key)
        if entries is not None and entry in entries:
            entries.remove(entry)
            if not entries:
                del self.excluded[key]

    def _sender(self, key: Hashable, offset: int, frame: bytes) -> Client | None:
        """The client whose excluded publish the message ``offset`` (its
        ``frame``) of ``key`` is, answered now; None when none is."""
        entries = self.excluded[key]
        for entry in entries:
            if entry.offset == offset if entry.offset is not None else entry.carried_by(frame):
                self.unexclude(key, entry)
                entry.answer(offset, frame)
                return entry.client
        return None

    def hold(self, key: Hashable, client: Client) -> None:
        self.holding.setdefault(key, {})[client] = []

    def release(self, key: Hashable, client: Client) -> list[Any] | None:
        held = self.holding.get(key)
        if held is None or client not in held:
            return None
        pending = held.pop(client)
        if not held:
            del self.holding[key]
        return pending

    def catch_up(self, key: Hashable, client: Client, last: int) -> None:
        self.waiting.setdefault(key, {})[client] = last

    def forget(self, key: Hashable, client: Client) -> None:
        self.release(key, client)
        for entry in [e for e in self.excluded.get(key, ()) if e.client is client]:
            self.unexclude(key, entry)
            entry.event.set()  # its publish answers by itself
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting.pop(client, None)
            if not waiting:
                del self.waiting[key]

    def forget_client(self, client: Client) -> None:
        for key in [k for k, h in self.holding.items() if client in h]:
            self.release(key, client)
        for key in [k for k, w in self.waiting.items() if client in w]:
            self.forget(key, client)
        for key in [k for k, x in self.excluded.items() if any(e.client is client for e in x)]:
            self.forget(key, client)

    def recipients(self, key: Hashable, offset: int, frame: bytes,
                   clients: Iterable[Client]) -> Iterable[Client]:
        """The clients a live message goes to now (``clients`` minus those
        holding — it is kept for them — and those still catching up)."""
        held = self.holding.get(key)
        waiting = self.waiting.get(key)
        excluded = self.excluded.get(key)
        if not held and not waiting and not excluded:
            return clients
        skip = set()
        if excluded:  # its sender's answer takes its place
            sender = self._sender(key, offset, frame)
            if sender is not None:
                skip.add(sender)
        if held:
            for client, pending in held.items():
                if client not in skip:
                    pending.append((offset, frame))
                skip.add(client)
        if waiting:
            for client, last in list(waiting.items()):
                if offset > last:
                    del waiting[client]
                else:
                    skip.add(client)
            if not waiting:
                del self.waiting[key]
        return [c for c in clients if c not in skip]


class _Excluded:
    """A publish with ``excludeSender`` on its way through Redis: its
    ``client``, the ``head`` of its envelope (to know it by until its
    ``offset`` is known), ``reply`` (its answer), ``answered``, and the
    ``event`` its publish waits on."""

    __slots__ = ("client", "head", "offset", "reply", "answered", "event")

    def __init__(self, client: Client, head: bytes, reply: Callable[[dict[str, Any]], None]) -> None:
        self.client = client
        self.head = head + b',"offset":'  # what finish_envelope appends next
        self.offset: int | None = None
        self.reply = reply
        self.answered = False
        self.event = gevent.event.Event()

    def carried_by(self, frame: bytes) -> bool:
        """Is ``frame`` (a text frame of a stored envelope) this publish's message?"""
        length = frame[1] & 0x7F
        return frame.startswith(self.head, 2 if length < 126 else 4 if length == 126 else 10)

    def answer(self, offset: int, frame: bytes) -> None:
        """Under the lock, in the message's place: the sender's answer."""
        self.answered = True
        self.reply({"offset": offset, "epoch": epoch_of(frame)})
        self.event.set()


class _Reconnects(PeerListener):
    """The broker listener of a :class:`ChannelHistory`: each (re)connection
    of the broker makes it read its channels again."""

    def __init__(self, history: ChannelHistory) -> None:
        self.history = history

    def channels_reconnected(self, covers: Callable[[str], bool] | None) -> None:
        self.history.reconnected(covers)

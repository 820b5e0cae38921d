"""Idempotent publishing: the same ``idempotencyKey`` on the same channel,
within a window, is delivered once and answered as the first was.

:class:`Idempotency` is a service's dedupe store (``PubSubService``,
``ChatService``, ``DataSyncBackend``).  A call with a key first *claims* it:
the first claim runs the publication and records its answer; a claim of a
key already answered returns the recorded answer and runs nothing; a claim
of a key whose first call is still running waits for its answer.  A call
that fails (an RPC error, an exception) records nothing and releases the
key: a retry then runs again.

Where the keys live: in this process (a bounded, expiring table) without a
distributed broker; in Redis with one, shared by every worker: one key per
claim, ``snorky:idem:<service>:<BLAKE2b of the scope and the key>`` (no
client text in a Redis key name), claimed with a Lua script (get or set),
holding the JSON answer for ``window`` seconds (``PX``).  A claim whose
call is running expires after :attr:`Idempotency.pending_timeout` seconds,
so a worker that died in the middle does not block the key for the window.
On a channel with history in Redis, the caller gives the channel's
``place`` (its topic): the claim is placed with the channel's history keys
(on its shard) and handed to the history's append, whose Lua script records
the answer in the same step as it numbers and publishes the message
(:data:`~snorky_sync.brokers.history.idempotent_append`): a worker killed
at any point publishes once, and a retry gets the recorded answer.  Without
history (a plain publish goes out with ``PUBLISH``, the answer is recorded
after it), a worker killed in the instant after publishing and before
recording may still publish twice: a retry runs again once the claim's
pending time is over.  Redis unreachable: the call is refused
(``Idempotency unavailable``), nothing is published.

The scope names what a key is unique in: the channel (canonical JSON) and
the publisher (the identity of a page, or the backend), so one page cannot
suppress another's publication by reusing its key.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from .. import checks, wire
from ..brokers.base import BrokerUnavailable
from ..brokers.history import AlreadyAnswered, IdempotentAppend, idempotent_append
from ..metrics import counters
from .base import RPCError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Service

__all__ = ["Idempotency", "KEY_PREFIX", "DEFAULT_WINDOW", "MAX_KEY_SIZE", "window", "scope"]

#: Redis key of a claim: ``snorky:idem:<service>:<32 hex>``
KEY_PREFIX = "snorky:idem:"
#: seconds a key is remembered by default (Centrifugo keeps its keys 5 minutes)
DEFAULT_WINDOW = 120.0
#: bytes of UTF-8 of an ``idempotencyKey`` (``Idempotency key too long``)
MAX_KEY_SIZE = 256

# KEYS[1]: the claim; ARGV[1]: pending ms.  nil: claimed by this call;
# "": another call is running; "a<json>": answered
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], '', 'PX', ARGV[1])
return false
"""

# KEYS[1]: the claim; ARGV[1]: the answer, ARGV[2]: window ms
_ANSWER = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1]: the claim: released only while still pending (not answered)
_RELEASE = """
if redis.call('GET', KEYS[1]) == '' then redis.call('DEL', KEYS[1]) end
return 1
"""


def window(owner: str, value: Any) -> float:
    """A constructor's ``idempotency_window`` argument, checked (seconds > 0)."""
    return checks.seconds(f"{owner}(idempotency_window=...)", value, above=True)


def scope(channel: Hashable | None, publisher: Any = None, backend: bool = False) -> bytes:
    """What a key is unique in: the channel's key (None: none, DataSync's
    deltas) and who publishes: the backend, or a page's identity (JSON;
    anonymous pages share ``null``)."""
    who = b"backend" if backend else b"page:" + wire.encode(publisher)
    where = b"" if channel is None else wire.key_to_bytes(channel)
    return len(who).to_bytes(4, "big") + who + where


class _Local:
    """One key of the in-process table: running (``answer`` None) or answered."""

    __slots__ = ("expires", "answer", "done")

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.answer: bytes | None = None
        self.done = gevent.event.Event()


class Idempotency:
    """A service's dedupe store (see the module).  ``window``: seconds a key
    is remembered after its answer; ``max_local_keys``: the in-process
    table's size (the oldest keys go first when it is full)."""

    pending_timeout = 10.0
    """Seconds a claim whose call is still running holds its key."""

    def __init__(self, service: Service, window: float = DEFAULT_WINDOW, max_local_keys: int = 100_000) -> None:
        self.service = service
        self.window = window
        self.max_local_keys = max_local_keys
        self.local: OrderedDict[bytes, _Local] = OrderedDict()
        self._scripts: tuple[Any, Any, Any] | None = None
        self._scripts_of: Any = None

    # -- the key ------------------------------------------------------------------------
    @staticmethod
    def check_key(key: Any) -> bytes:
        """``key`` as UTF-8: RPCError ``Invalid params`` unless a non-empty
        string, ``Idempotency key too long`` past :data:`MAX_KEY_SIZE` bytes."""
        if not isinstance(key, str) or not key:
            raise RPCError("Invalid params")
        data = key.encode("utf-8", "surrogatepass")
        if len(data) > MAX_KEY_SIZE:
            counters["idempotency_keys_refused"] += 1
            raise RPCError("Idempotency key too long")
        return data

    def digest(self, scope: bytes, key: bytes) -> bytes:
        """The claim's name for ``key`` in ``scope`` (lengths prefixed: no two
        pairs give the same bytes)."""
        fam = self.service.name.encode("utf-8", "surrogatepass")
        h = hashlib.blake2b(digest_size=16, person=b"snorky-idem")
        for part in (fam, scope, key):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
        return h.digest()

    # -- running once -------------------------------------------------------------------
    def once(self, scope: bytes, key: Any, run: Callable[[], Any], place: str | None = None) -> Any:
        """``run()`` unless ``key`` (an ``idempotencyKey``; None: no key, it
        just runs) was claimed in ``scope`` within the window: then the
        first call's answer (waiting for it while that call runs).
        ``place``: the topic of the channel whose Redis history ``run``
        appends to (:meth:`ChannelHistory.idempotency_place
        <snorky_sync.services.history.ChannelHistory.idempotency_place>`):
        the claim lives with it and the append records the answer."""
        if key is None:
            return run()
        name = self.digest(scope, self.check_key(key))
        broker = self.service.broker
        if broker is not None and broker.distributed:
            return self._once_redis(broker, name, run, place)
        return self._once_local(name, run)

    def _once_local(self, name: bytes, run: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.pending_timeout
        while True:
            now = time.monotonic()
            self._expire(now)
            entry = self.local.get(name)
            if entry is None:
                break
            if entry.answer is not None:
                counters["idempotent_duplicates"] += 1
                return wire.decode(entry.answer)
            counters["idempotent_waits"] += 1  # a duplicate of a call still running
            if not entry.done.wait(max(0.0, deadline - now)):
                raise RPCError("Publish in progress")
        entry = self.local[name] = _Local(time.monotonic() + self.pending_timeout)
        try:
            answer = run()
        except BaseException:
            if self.local.get(name) is entry:
                del self.local[name]
            entry.done.set()
            raise
        entry.answer = wire.encode(answer)
        entry.expires = time.monotonic() + self.window
        self.local.move_to_end(name)
        entry.done.set()
        return answer

    def _expire(self, now: float) -> None:
        table = self.local
        while table:
            name, entry = next(iter(table.items()))
            if entry.expires > now and len(table) <= self.max_local_keys:
                return
            if entry.expires > now:
                counters["idempotency_keys_evicted"] += 1  # full: the window is shorter for it
            del table[name]
            entry.done.set()

    def _scripts_for(self, broker: Any) -> tuple[Any, Any, Any]:
        if self._scripts is None or self._scripts_of is not broker:
            self._scripts = (broker.script(_CLAIM), broker.script(_ANSWER), broker.script(_RELEASE))
            self._scripts_of = broker
        return self._scripts

    def _once_redis(self, broker: Any, name: bytes, run: Callable[[], Any], place: str | None) -> Any:
        claim, record, release = self._scripts_for(broker)
        keys = [f"{KEY_PREFIX}{self.service.name}:{name.hex()}"]
        if place is not None:  # a Redis Cluster: in the channel's slot (its history appends record it)
            keys[0] = broker.tagged_key(keys[0], place)
        window_ms = max(1, int(self.window * 1000))
        pending_ms = max(1, int(self.pending_timeout * 1000))
        deadline = time.monotonic() + 2 * self.pending_timeout
        pause = 0.01
        while True:
            try:
                found = claim(keys, [pending_ms], place=place)
            except BrokerUnavailable:
                counters["idempotency_unavailable"] += 1
                raise RPCError("Idempotency unavailable") from None
            if found is None:
                break
            if found:
                counters["idempotent_duplicates"] += 1
                return wire.decode(bytes(found)[1:])
            if time.monotonic() > deadline:  # pragma: no cover - a claim outlives its PX only if Redis stalls
                raise RPCError("Publish in progress")
            if pause == 0.01:
                counters["idempotent_waits"] += 1  # a duplicate of a call running (on any worker)
            gevent.sleep(pause)  # another worker's call is running: its answer comes soon
            pause = min(pause * 2, 0.25)
        appending = None if place is None else IdempotentAppend(keys[0], place, window_ms)
        token = idempotent_append.set(appending)
        try:
            answer = run()
        except AlreadyAnswered as exc:  # this call outlived its claim; another one answered
            counters["idempotent_duplicates"] += 1
            return wire.decode(exc.answer[1:])
        except BaseException:
            try:
                release(keys, [], place=place)
            except BrokerUnavailable:
                pass  # the claim expires after pending_timeout
            raise
        finally:
            idempotent_append.reset(token)
        if appending is not None and appending.recorded:
            return answer  # recorded by the history's append, with the message
        try:
            record(keys, [b"a" + wire.encode(answer), window_ms], place=place)
        except BrokerUnavailable:
            counters["idempotency_unrecorded"] += 1  # published; a retry after pending_timeout publishes again
        return answer

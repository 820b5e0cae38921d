"""SockJS sessions across processes without sticky sessions (with Redis).

A session lives in the process that got its first request: that process
claims ``sockjs:<endpoint>:<session id>`` in Redis (:meth:`Broker.claim`,
which dies with the process).  A request for a session this process does
not hold asks Redis for the owner (:meth:`Broker.owner`, cached) and is
handed over through the broker, on the owner's topic
``sockjs:<endpoint>:<origin>``:

* a send (``xhr_send``, ``jsonp_send``) travels as its body (read only once
  an owner is known, and within the size limit); the owner processes it as
  a local one (:func:`.transports.process_body`: the session's lock, limits
  and parsing) and answers the status and text (404 when it no longer has
  the session);
* a receive request becomes a receiver on the owner (``attach``), which gets
  SockJS frames exactly as a local one would; this process wraps them for
  the transport and writes them, then says ``ready`` (so a slow reader still
  leaves its frames in the owner's bounded queue) and finally ``detach``.

The cost: each handed-over request is one Redis round trip to find the
owner (then cached) plus two pub/sub hops per delivery (frames out,
``ready`` back).  Requests that reach the owner cost nothing extra.
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import orjson

from ...brokers.base import BrokerUnavailable
from ...logs import printable
from ...metrics import counters
from . import protocol
from .transports import process_body

if TYPE_CHECKING:  # pragma: no cover
    from ...brokers.base import Broker
    from .manager import SessionManager
    from .session import SockJSSession
    from .transports import Receiver

__all__ = ["Relay"]

log = logging.getLogger("snorky_sync.sockjs.relay")

_loads = orjson.loads
_dumps = orjson.dumps
_monotonic = time.monotonic
_rids = itertools.count(1)
_OWNER_TTL = 2.0  # seconds an owner lookup is reused


class _RemoteReceiver:
    """On the owner: a receive request served by another process."""

    __slots__ = ("relay", "topic", "rid", "polling", "ready", "session")

    def __init__(self, relay: Relay, topic: str, rid: int, polling: bool,
                 session: SockJSSession | None) -> None:
        self.relay, self.topic, self.rid = relay, topic, rid
        self.polling = polling
        self.ready = True
        self.session = session

    def deliver(self, frames: list[bytes], last: bool) -> None:
        self.ready = False
        self.relay.broker.publish(self.topic, _dumps(
            {"op": "frames", "rid": self.rid, "frames": [f.decode() for f in frames], "last": last}))
        if self.polling or last:
            # this request ends with what it was just given: the session takes
            # its next receiver now, not once the serving process's "detach"
            # has crossed Redis (the client's next poll could arrive first: 2010)
            self.relay.remote.pop((self.topic, self.rid), None)
            if self.session is not None:
                self.session.detach(self, False)


class _RemoteSource:
    """On the process serving the request: the session, as far as the receiver sees it."""

    __slots__ = ("relay", "topic", "sid", "rid", "receiver")

    def __init__(self, relay: Relay, owner: str, sid: str) -> None:
        self.relay = relay
        self.topic = relay.topic_of(owner)
        self.sid = sid
        self.rid = next(_rids)
        self.receiver: Receiver | None = None

    def _tell(self, **msg: Any) -> None:
        msg["rid"] = self.rid
        msg["reply"] = self.relay.topic
        self.relay.broker.publish(self.topic, _dumps(msg))

    def attach(self, receiver: Receiver) -> bool:
        self.receiver = receiver
        self.relay.waiting[self.rid] = self
        counters["sockjs_relayed_out"] += 1
        self._tell(op="attach", sid=self.sid, polling=receiver.polling)
        return True

    def receiver_ready(self, receiver: Receiver) -> None:
        self._tell(op="ready")

    def detach(self, receiver: Receiver, aborted: bool) -> None:
        self.relay.waiting.pop(self.rid, None)
        self._tell(op="detach", aborted=aborted)


class Relay:
    """Hands requests for sessions held elsewhere to their owner, and serves
    the requests other processes hand to this one."""

    def __init__(self, manager: SessionManager, broker: Broker) -> None:
        self.manager = manager
        self.broker = broker
        self.prefix: str = "sockjs:" + manager.name + ":"
        self.topic = self.topic_of(broker.origin.hex())
        self.waiting: dict[int, _RemoteSource] = {}   # our requests served by an owner
        self.remote: dict[tuple[str, int], _RemoteReceiver] = {}  # others' requests we serve
        self.sends: dict[int, gevent.event.AsyncResult] = {}
        self.owners: dict[str, tuple[str, float]] = {}
        broker.subscribe(self.topic, self._on_message)

    def topic_of(self, origin_hex: str) -> str:
        return self.prefix + origin_hex

    # -- ownership -------------------------------------------------------------------
    def _find(self, sid: str) -> str | None:
        cached = self.owners.get(sid)
        if cached is not None and cached[1] > _monotonic():
            return cached[0]
        owner = self.broker.owner(self.prefix + sid)
        if owner is not None and owner != self.broker.origin.hex():
            if len(self.owners) > 10000:
                self.owners.clear()
            self.owners[sid] = (owner, _monotonic() + _OWNER_TTL)
            return owner
        return None

    def claim(self, sid: str) -> tuple[str | None, str | None]:
        """Before creating a session: ``(owner, token)``: the origin of the
        process holding it, or this process's new ownership token."""
        try:
            owner = self._find(sid)
            if owner is not None:
                return owner, None
            token = self.broker.claim(self.prefix + sid)
            if token is not None:
                return None, token
            return self._find(sid), None
        except BrokerUnavailable:
            log.warning("Redis unavailable: SockJS session %s is served by this process only",
                        printable(sid.partition(".")[0]))
            return None, None

    def release(self, sid: str, token: str | None) -> None:
        if token:
            self.broker.release([(self.prefix + sid, token)])

    def session_ended(self, session: SockJSSession) -> None:
        if session.claim:
            self.broker.release([(self.prefix + session.sid, session.claim)])
            session.claim = None

    def remote_source(self, owner: str, sid: str) -> _RemoteSource:
        return _RemoteSource(self, owner, sid)

    def owner_of(self, sid: str) -> str | None:
        """The process holding session ``sid``, if another one does."""
        try:
            return self._find(sid)
        except BrokerUnavailable:
            return None

    def send(self, sid: str, body: bytes, form: bool = False, timeout: float = 5.0) -> tuple[int, str]:
        """Hand a send's body to the session's owner: its (status, text)."""
        owner = self.owner_of(sid)
        if owner is None:
            return 404, ""
        rid = next(_rids)
        done = gevent.event.AsyncResult()
        self.sends[rid] = done
        counters["sockjs_relayed_out"] += 1
        try:
            self.broker.publish(self.topic_of(owner), _dumps(
                {"op": "send", "rid": rid, "sid": sid, "reply": self.topic,
                 "body": body.decode("latin-1"), "form": form}))  # bytes as they came
            status, text = done.get(timeout=timeout)
        except gevent.Timeout:
            status, text = 503, "Session owner did not answer."
        finally:
            self.sends.pop(rid, None)
        if status == 404:
            self.owners.pop(sid, None)
        return status, text

    # -- the broker's listener (must not block) ----------------------------------------------
    def _on_message(self, data: bytes) -> None:
        msg = _loads(data)
        op = msg["op"]
        rid = msg["rid"]
        if op == "frames":
            source = self.waiting.get(rid)
            if source is not None and source.receiver is not None:
                source.receiver.deliver([f.encode() for f in msg["frames"]], msg["last"])
        elif op == "status":
            done = self.sends.get(rid)
            if done is not None:
                done.set((msg["status"], msg.get("text", "")))
        elif op == "attach":
            counters["sockjs_relayed_in"] += 1
            reply = msg["reply"]
            session = self.manager.get(msg["sid"])
            receiver = _RemoteReceiver(self, reply, rid, msg["polling"], session)
            if session is None:
                receiver.deliver([protocol.close_frame(1002, "Connection interrupted")], True)
                return
            self.remote[reply, rid] = receiver
            session.attach(receiver)
        elif op in ("ready", "detach"):
            key = (msg["reply"], rid)
            known = self.remote.get(key)
            if known is None or known.session is None:  # (only receivers of a session are kept)
                return
            if op == "ready":
                known.ready = True
                known.session.receiver_ready(known)
            else:
                del self.remote[key]
                known.session.detach(known, msg["aborted"])
        elif op == "send":
            counters["sockjs_relayed_in"] += 1
            gevent.spawn(self._serve_send, msg)

    def _serve_send(self, msg: dict[Any, Any]) -> None:
        session = self.manager.get(msg["sid"])
        body = msg["body"].encode("latin-1")
        if session is None or session.closing is not None:
            status, text = 404, ""
        else:
            try:
                status, text = process_body(self.manager, session, lambda: body, msg.get("form", False))
            except Exception:
                log.exception("relayed send for %r failed", session)
                status, text = 204, ""
        self.broker.publish(msg["reply"], _dumps({"op": "status", "rid": msg["rid"],
                                                  "status": status, "text": text}))

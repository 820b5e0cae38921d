"""Replica: one service's state shared by every process on a distributed broker.

Each process is the only author of its own *facts* (chat: "identity X is in
channel C here"; messaging: "name N is registered here"; cursors: "cursor H
of document D is here, with this position").  It announces changes as
events on the service's topic, and every other process keeps a copy per
origin process::

    {"op": "add", "from": origin, "f": fact}      a fact appeared or changed
    {"op": "del", "from": origin, "f": fact}      a fact went away
    {"op": "hello", "from": origin, "facts": [..]} my whole state; send me yours
    {"op": "snap", "from": origin, "facts": [..]}  my whole state
    {"op": "want", "from": origin, "who": o}       o: send your whole state

Events of one process reach the others in the order it published them (the
broker's guarantee), and a process publishes under its service lock, so a
snapshot and the events around it are consistent.  A whole-state message
replaces that origin's copy; the difference is applied fact by fact, so the
service sends the same notifications as for single events.

Convergence: after every (re)connect a process says ``hello`` (everybody
answers ``snap``), which repairs whatever was lost while Redis was away.  A
process that stops heartbeating is declared gone by the broker and its facts
are removed everywhere (the service notifies, e.g. chat ``left``); if it
comes back it is asked for its state again (``want``).

Other ops (routed messages) are handed to the service's
``replica_event(origin, event)``.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol

import gevent

from .. import wire
from ..brokers.base import PeerListener
from ..metrics import counters

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker

__all__ = ["Replica", "Replicated", "present"]


class Replicated(Protocol):
    """What a :class:`Replica` needs of its service (see :class:`Replica`)."""

    lock: Any

    def fact_key(self, fact: Any) -> Hashable: ...
    def local_facts(self) -> list[Any]: ...
    def remote_set(self, origin: str, key: Any, fact: Any, old: Any) -> None: ...
    def remote_del(self, origin: str, key: Any, fact: Any, event: Any) -> None: ...
    def replica_event(self, origin: str, event: dict[str, Any]) -> None: ...


class Replica(PeerListener):
    """Keeps every other process's facts for ``service``.

    The service provides (all called under ``service.lock``):

    - ``fact_key(fact) -> Hashable``: identifies a fact within one origin;
    - ``local_facts() -> list``: this process's facts now;
    - ``remote_set(origin, key, fact, old)``: an origin's fact appeared
      (``old`` None) or changed;
    - ``remote_del(origin, key, fact, event)``: an origin's fact went away
      (``event``: the fact as the ``del`` event carried it, None when the
      origin's whole state was replaced or dropped);
    - ``replica_event(origin, event)``: any other op;
    - optionally ``reconnected()``: called (without the lock) after the
      broker reconnected, e.g. to re-assert claims.
    """

    def __init__(self, service: Replicated, broker: Broker, topic: str) -> None:
        self.service = service
        self.broker = broker
        self.topic = topic
        self.origin = broker.origin.hex()
        self.by_origin: dict[str, dict[Hashable, Any]] = {}
        broker.subscribe(topic, self._on_message)
        broker.add_listener(self)

    def __repr__(self) -> str:
        return f"<Replica {self.topic}>"

    # -- publishing (caller holds service.lock) -----------------------------------
    def publish(self, event: dict[Any, Any]) -> None:
        event["from"] = self.origin
        self.broker.publish(self.topic, wire.encode(event))

    def add(self, fact: Any) -> None:
        self.publish({"op": "add", "f": fact})

    def delete(self, fact: Any) -> None:
        self.publish({"op": "del", "f": fact})

    # -- broker listener ------------------------------------------------------------
    def broker_connected(self) -> None:
        with self.service.lock:
            self.publish({"op": "hello", "facts": self.service.local_facts()})
        hook = getattr(self.service, "reconnected", None)
        if hook is not None:
            gevent.spawn(hook)

    def peer_seen(self, origin: bytes) -> None:
        o = origin.hex()
        with self.service.lock:
            if o not in self.by_origin:
                self.publish({"op": "want", "who": o})

    def peer_gone(self, origin: bytes) -> None:
        with self.service.lock:
            self._replace(origin.hex(), None)

    # -- receiving -------------------------------------------------------------------
    def _on_message(self, data: bytes) -> None:
        event = wire.decode(data)
        origin = event.get("from")
        if origin == self.origin:
            return
        op = event.get("op")
        service = self.service
        with service.lock:
            if op == "add":
                fact = event["f"]
                key = service.fact_key(fact)
                facts = self._facts_of(origin)
                old = facts.get(key)
                facts[key] = fact
                service.remote_set(origin, key, fact, old)
            elif op == "del":
                fact = event["f"]
                key = service.fact_key(fact)
                facts = self._facts_of(origin)
                stored = facts.pop(key, None)
                if stored is not None:
                    service.remote_del(origin, key, stored, fact)
            elif op == "hello":
                self._replace(origin, event["facts"])
                self.publish({"op": "snap", "facts": service.local_facts()})
            elif op == "snap":
                self._replace(origin, event["facts"])
            elif op == "want":
                if event.get("who") == self.origin:
                    self.publish({"op": "snap", "facts": service.local_facts()})
            else:
                service.replica_event(origin, event)

    def _facts_of(self, origin: str) -> dict[Any, Any]:
        facts = self.by_origin.get(origin)
        if facts is None:
            # an event from a process we have no state of (we missed its hello,
            # or had declared it gone): apply it and ask for the whole state
            counters["replica_state_requests"] += 1
            facts = self.by_origin[origin] = {}
            self.broker.heard_from(bytes.fromhex(origin))
            self.publish({"op": "want", "who": origin})
        return facts

    def _replace(self, origin: str, new_facts: list[Any] | None) -> None:
        """Make ``origin``'s copy equal to ``new_facts`` (None: forget the origin)."""
        service = self.service
        old = self.by_origin.get(origin, {})
        new = {service.fact_key(f): f for f in new_facts} if new_facts is not None else {}
        if new_facts is None:
            self.by_origin.pop(origin, None)
        else:
            if origin not in self.by_origin:
                self.broker.heard_from(bytes.fromhex(origin))
            self.by_origin[origin] = new
        for key, fact in old.items():
            if key not in new:
                service.remote_del(origin, key, fact, None)
        for key, fact in new.items():
            was = old.get(key)
            if was != fact:
                service.remote_set(origin, key, fact, was)


def present(replica: Replica | None) -> Replica:
    """``replica``, on the paths that only run in cluster mode (an error otherwise)."""
    if replica is None:
        raise RuntimeError("no replica: this path runs only with a distributed broker")
    return replica

"""Messaging: named participants send messages to each other (PROTOCOL.md §3).

A connection registers one or more participant names (global to the
service); any participant can send to any other by name.  Override
:meth:`MessagingService.is_name_allowed` to restrict names (e.g. to the
connection's identity).

With a distributed broker (Redis) names are global across processes:
``registerParticipant`` claims the name in Redis (one atomic script: the
name is taken unless its owner process is dead, see
:meth:`~snorky_sync.brokers.base.Broker.claim`), so two processes racing for
one name cannot both win.  Every process keeps a replica of the others'
names (:class:`~.replica.Replica`) for ``listParticipants`` and to route
``send`` to the process holding the destination.  While Redis is
unreachable a name is checked against what this process knows and accepted
unconfirmed; on reconnect every name is claimed again, and one that another
process took meanwhile is dropped here (logged, counted as
``messaging_names_lost``).
"""
from __future__ import annotations

import logging
from typing import Any

from ..brokers.base import BrokerUnavailable
from ..metrics import counters
from .base import RPCError, RPCService, rpc_command
from .replica import Replica, present

__all__ = ["MessagingService"]

log = logging.getLogger("snorky_sync.services.messaging")


class MessagingService(RPCService):
    """``registerParticipant``, ``unregisterParticipant``, ``listParticipants``, ``send``."""

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_names_per_client = 100
    max_name_size = 256

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.participants: dict[Any, Any] = {}   # name -> client
        self.names_by_client: dict[Any, set] = {}  # client -> names
        self.replica: Replica | None = None
        self.remote: dict[str, dict] = {}        # name -> {origin: None} (other processes)
        self.tokens: dict[str, str] = {}         # name -> claim token ("" unconfirmed)
        self._claiming: set[str] = set()         # names being claimed right now

    def use_broker(self, broker) -> None:
        super().use_broker(broker)
        if broker.distributed:
            self.replica = Replica(self, broker, f"messaging:{self.name}")

    def is_name_allowed(self, client, name: Any) -> bool:
        """Hook: may ``client`` register ``name``?  Default: yes."""
        return True

    def _checked_name(self, name: Any) -> Any:
        if not isinstance(name, str) or len(name) > self.max_name_size:
            raise RPCError("Name not allowed")
        return name

    def _claim_key(self, name: str) -> str:
        return f"messaging:{self.name}:{name}"

    def _taken(self, name: Any) -> bool:
        return isinstance(name, str) and (
            name in self.participants or name in self.remote or name in self._claiming)

    @rpc_command(lock=False)  # may wait for Redis, without the lock
    def register_participant(self, req, name):
        client = req.client
        with self.lock:
            if self._taken(name):
                raise RPCError("Name already registered")
            self._checked_name(name)
            if not self.is_name_allowed(client, name):
                raise RPCError("Name not allowed")
            mine = self.names_by_client.get(client)
            if mine is not None and len(mine) >= self.max_names_per_client:
                raise RPCError("Too many names")
            if self.replica is None:
                self._add(client, name)
                return None
            self._claiming.add(name)
        try:
            token = self.broker.claim(self._claim_key(name))
        except BrokerUnavailable:
            counters["messaging_names_unconfirmed"] += 1
            log.warning("%s: Redis unreachable, name registered on this process's word only "
                        "(claimed again on reconnect)", self.name)
            token = ""
        finally:
            with self.lock:
                self._claiming.discard(name)
        if token is None:
            raise RPCError("Name already registered")
        with self.lock:
            self._add(client, name)
            self.tokens[name] = token
            self.replica.add(name)
        self.broker.flush()  # the name reaches Redis before the caller hears back
        return None

    def _add(self, client, name: str) -> None:
        self.names_by_client.setdefault(client, set()).add(name)
        self.participants[name] = client

    @rpc_command(lock=False)
    def unregister_participant(self, req, name):
        with self.lock:
            owner = self.participants.get(name) if isinstance(name, str) else None
            if owner is None:
                raise RPCError("Unknown participant" if not self._taken(name) else "Invalid participant")
            if owner is not req.client:
                raise RPCError("Invalid participant")
            released = self._forget(req.client, name)
        if released:  # the name is free cluster-wide when the answer goes out
            self.broker.release(released, wait=True)
            self.broker.flush()  # and every process hears of it by then (see barrier)

    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def list_participants(self, req):
        if self.replica is not None:
            self.broker.barrier()  # names registered elsewhere before this call are known here
        with self.lock:
            return self._list()

    def _list(self) -> list:
        if self.remote:
            return sorted(set(self.participants).union(self.remote))
        return sorted(self.participants)

    # Snorky 0.1's method names (the same commands)
    registerParticipant = register_participant
    unregisterParticipant = unregister_participant
    listParticipants = list_participants

    @rpc_command(lock=False)  # an unknown destination may wait for the broker, without the lock
    def send(self, req, sender, dest, body):
        with self.lock:
            if self._send(req, sender, dest, body):
                return None
        if self.replica is not None and isinstance(dest, str):
            self.broker.barrier()  # registered elsewhere a moment ago?
            with self.lock:
                if self._send(req, sender, dest, body):
                    return None
        raise RPCError("Unknown destination")

    def _send(self, req, sender, dest, body) -> bool:
        """Deliver; False when ``dest`` is unknown here."""
        if not isinstance(sender, str) or self.participants.get(sender) is not req.client:
            raise RPCError("Invalid sender")
        if not isinstance(dest, str):
            return False
        msg = {"type": "message", "sender": sender, "dest": dest, "body": body}
        target = self.participants.get(dest)
        if target is not None:
            self.send_message_to(target, msg)
        elif dest in self.remote:
            present(self.replica).publish({"op": "msg", "d": dest, "m": msg})
        else:
            return False
        return True

    def _forget(self, client, name) -> list:
        """Drop a local name; returns the claims to release."""
        del self.participants[name]
        mine = self.names_by_client.get(client)
        if mine is not None:
            mine.discard(name)
            if not mine:
                del self.names_by_client[client]
        if self.replica is None:
            return []
        self.replica.delete(name)
        token = self.tokens.pop(name, "")
        return [(self._claim_key(name), token)] if token else []

    def client_disconnected(self, client) -> None:
        released: list = []
        with self.lock:
            for name in list(self.names_by_client.get(client, ())):
                released.extend(self._forget(client, name))
        if released:
            self.cluster.release(released)

    # -- replication (Replica calls these under self.lock) -----------------------------
    @staticmethod
    def fact_key(fact) -> str:
        return fact

    def local_facts(self) -> list:
        return list(self.participants)

    def remote_set(self, origin: str, key: str, fact, old) -> None:
        self.remote.setdefault(key, {})[origin] = None

    def remote_del(self, origin: str, key: str, fact, event) -> None:
        origins = self.remote.get(key)
        if origins is not None:
            origins.pop(origin, None)
            if not origins:
                del self.remote[key]

    def replica_event(self, origin: str, event: dict) -> None:
        if event.get("op") == "msg":
            target = self.participants.get(event.get("d"))
            if target is not None:
                self.send_message_to(target, event["m"])

    def reconnected(self) -> None:
        """After a reconnect (Redis may have restarted empty): claim every local name again."""
        with self.lock:
            for name, token in self.tokens.items():
                if not token:
                    self.tokens[name] = self.cluster.new_claim_token()
            pairs = [(name, token) for name, token in self.tokens.items()]
        if not pairs:
            return
        try:
            results = self.cluster.claim_many([(self._claim_key(n), t) for n, t in pairs])
        except BrokerUnavailable:
            return  # the next reconnect tries again
        with self.lock:
            for (name, token), ok in zip(pairs, results):
                if ok or self.tokens.get(name) != token:
                    continue
                client = self.participants.get(name)
                counters["messaging_names_lost"] += 1
                log.warning("%s: participant name %r was taken by another process while Redis "
                            "was unreachable: dropped here", self.name, name)
                self.tokens.pop(name, None)
                if client is not None:
                    self._forget(client, name)

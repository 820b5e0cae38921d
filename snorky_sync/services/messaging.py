"""Messaging: named participants send messages to each other (protocol.md §3).

A connection registers one or more participant names (global to the
service); any participant can send to any other by name.  Override
:meth:`MessagingService.is_name_allowed` to restrict names (e.g. to the
connection's identity), :meth:`~MessagingService.can_send` to restrict who
may write to whom and :meth:`~MessagingService.can_list_participants` to
restrict who may list the names (refused: ``Not authorized``).

With a distributed broker (Redis) names are global across processes:
``registerParticipant`` claims the name in Redis (one atomic script: the
name is taken unless its owner process is dead, see
:meth:`~snorky_sync.brokers.base.Broker.claim`), so two processes racing for
one name cannot both win.  Every process keeps a replica of the others'
names (:class:`~.replica.Replica`) for ``listParticipants`` and to know
where a destination is; a ``send`` to a name held elsewhere goes to that
process only, on its own topic (``msgto:NAME:<origin>``), not to every
process.  While Redis is
unreachable a name is checked against what this process knows and accepted
unconfirmed; on reconnect every name is claimed again, and one that another
process took meanwhile is dropped here (logged, counted as
``messaging_names_lost``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import wire
from ..brokers.base import BrokerUnavailable
from ..metrics import counters
from .base import LimitAlias, RPCError, RPCService, rpc_command
from .replica import Replica

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..client import Client
    from .base import Request

__all__ = ["MessagingService"]

log = logging.getLogger("snorky_sync.services.messaging")


class MessagingService(RPCService):
    """``registerParticipant``, ``unregisterParticipant``, ``listParticipants``, ``send``.

    Limits: constructor keywords; the class attributes are the defaults.
    """

    hashable_messages = False  # keys by canonical JSON (wire.json_key)

    max_names = 100
    """Participant names registered per connection (``Too many names``)."""
    max_names_per_client = LimitAlias("max_names")
    """``max_names``' name in snorky_sync 0.2."""
    max_name_size = 256
    """Characters of a participant name (``Name not allowed``)."""

    def __init__(self, name: str, *, max_names: int | None = None,
                 max_name_size: int | None = None) -> None:
        """The limits: see the class (None: the class's)."""
        super().__init__(name)
        self.set_limits(max_names=max_names, max_name_size=max_name_size)
        self.participants: dict[Any, Any] = {}   # name -> client
        self.names_by_client: dict[Any, set[Any]] = {}  # client -> names
        self.replica: Replica | None = None
        self.remote: dict[str, dict[Any, Any]] = {}        # name -> {origin: None} (other processes)
        self.tokens: dict[str, str] = {}         # name -> claim token ("" unconfirmed)
        self._claiming: set[str] = set()         # names being claimed right now

    def use_broker(self, broker: Broker) -> None:
        super().use_broker(broker)
        if broker.distributed:
            self.replica = Replica(self, broker, f"messaging:{self.name}")
            broker.subscribe(self._inbox(broker.origin.hex()), self._on_direct)

    def _inbox(self, origin: str) -> str:
        """The topic of the messages sent to names held by process ``origin``."""
        return f"msgto:{self.name}:{origin}"

    def _on_direct(self, data: bytes) -> None:
        """A ``send`` from another process to a name held here."""
        event = wire.decode(data)
        with self.lock:
            target = self.participants.get(event.get("d"))
            if target is not None:
                self.send_message_to(target, event["m"])

    def is_name_allowed(self, client: Client, name: Any) -> bool:
        """Hook: may ``client`` register ``name``?  Default: yes."""
        return True

    def can_send(self, client: Client, sender: str, dest: str) -> bool:
        """Hook: may ``client``, holding ``sender``, send to ``dest``?  Asked
        before anything is delivered (refused: ``Not authorized``), after the
        sender is checked; called without the service's lock (it may wait).
        Default: yes."""
        return True

    def can_list_participants(self, client: Client) -> bool:
        """Hook: may ``client`` list the registered names (refused: ``Not
        authorized``)?  Called without the service's lock.  Default: yes."""
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
    def register_participant(self, req: Request, name: Any) -> None:
        client = req.client
        with self.lock:
            if self._taken(name):
                raise RPCError("Name already registered")
            self._checked_name(name)
            if not self.is_name_allowed(client, name):
                raise RPCError("Name not allowed")
            mine = self.names_by_client.get(client)
            if mine is not None and len(mine) >= self.max_names:
                raise RPCError("Too many names")
            if self.replica is None:
                self._add(client, name)
                return None
            self._claiming.add(name)
        try:
            token = self.cluster.claim(self._claim_key(name))
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
        self.cluster.flush()  # the name reaches Redis before the caller hears back
        return None

    def _add(self, client: Client, name: str) -> None:
        self.names_by_client.setdefault(client, set()).add(name)
        self.participants[name] = client

    @rpc_command(lock=False)
    def unregister_participant(self, req: Request, name: Any) -> None:
        with self.lock:
            owner = self.participants.get(name) if isinstance(name, str) else None
            if owner is None:
                raise RPCError("Unknown participant" if not self._taken(name) else "Invalid participant")
            if owner is not req.client:
                raise RPCError("Invalid participant")
            released = self._forget(req.client, name)
        if released:  # the name is free cluster-wide when the answer goes out
            self.cluster.release(released, wait=True)
            self.cluster.flush()  # and every process hears of it by then (see barrier)

    @rpc_command(lock=False)  # with Redis it waits for the broker, without the lock
    def list_participants(self, req: Request) -> list[Any]:
        if not self.can_list_participants(req.client):
            raise RPCError("Not authorized")
        if self.replica is not None:
            self.cluster.barrier()  # names registered elsewhere before this call are known here
        with self.lock:
            return self._list()

    def _list(self) -> list[Any]:
        if self.remote:
            return sorted(set(self.participants).union(self.remote))
        return sorted(self.participants)

    # Snorky 0.1's method names (the same commands)
    registerParticipant = register_participant
    unregisterParticipant = unregister_participant
    listParticipants = list_participants

    @rpc_command(lock=False)  # an unknown destination may wait for the broker, without the lock
    def send(self, req: Request, sender: Any, dest: Any, body: Any) -> None:
        with self.lock:
            self._check_sender(req, sender)
        if not self.can_send(req.client, sender, dest):
            raise RPCError("Not authorized")
        with self.lock:
            if self._send(req, sender, dest, body):
                return None
        if self.replica is not None and isinstance(dest, str):
            self.cluster.barrier()  # registered elsewhere a moment ago?
            with self.lock:
                if self._send(req, sender, dest, body):
                    return None
        raise RPCError("Unknown destination")

    def _send(self, req: Request, sender: Any, dest: Any, body: Any) -> bool:
        """Deliver; False when ``dest`` is unknown here."""
        self._check_sender(req, sender)  # again: the lock was let go since
        if not isinstance(dest, str):
            return False
        msg = {"type": "message", "sender": sender, "dest": dest, "body": body}
        target = self.participants.get(dest)
        if target is not None:
            self.send_message_to(target, msg)
        elif dest in self.remote:
            data = wire.encode({"d": dest, "m": msg})
            for origin in self.remote[dest]:  # the process holding it (two: a claim being settled)
                self.cluster.publish(self._inbox(origin), data)
        else:
            return False
        return True

    def _check_sender(self, req: Request, sender: Any) -> None:
        """Under the lock: ``sender`` is one of the caller's names."""
        if not isinstance(sender, str) or self.participants.get(sender) is not req.client:
            raise RPCError("Invalid sender")

    def _forget(self, client: Client, name: str) -> list[Any]:
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

    def client_disconnected(self, client: Client) -> None:
        released: list[Any] = []
        with self.lock:
            for name in list(self.names_by_client.get(client, ())):
                released.extend(self._forget(client, name))
        if released:
            self.cluster.release(released)

    # -- replication (Replica calls these under self.lock) -----------------------------
    @staticmethod
    def fact_key(fact: str) -> str:
        return fact

    def local_facts(self) -> list[Any]:
        return list(self.participants)

    def remote_set(self, origin: str, key: str, fact: str, old: Any) -> None:
        self.remote.setdefault(key, {})[origin] = None

    def remote_del(self, origin: str, key: str, fact: str, event: Any) -> None:
        origins = self.remote.get(key)
        if origins is not None:
            origins.pop(origin, None)
            if not origins:
                del self.remote[key]

    def replica_event(self, origin: str, event: dict[Any, Any]) -> None:
        if event.get("op") == "msg":  # a process of an earlier release: sent to every process
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

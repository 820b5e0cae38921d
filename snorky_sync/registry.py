"""ServiceRegistry: a named set of services and the router in front of them.

Endpoints hand every incoming frame to :meth:`ServiceRegistry.process_message_raw`;
the registry decodes it, checks the envelope (protocol.md §1) and passes the
``message`` to the service named by ``service``.  Bad input is logged
(rate-limited, with the remote address) and dropped: nothing is sent back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import wire
from .hashable import NestingTooDeep, make_hashable

if TYPE_CHECKING:
    from .brokers.base import Broker
    from .client import Client
    from .services.base import Service
from .logs import RateLimitedLogger, printable
from .metrics import counters

__all__ = ["ServiceRegistry"]

log = logging.getLogger("snorky_sync.registry")
_warn = RateLimitedLogger(log)
_decode = wire.decode
_DecodeError = wire.DecodeError
_may_be_deep = wire.may_be_deep
_too_deep = wire.too_deep
_MAX_DEPTH = wire.MAX_DEPTH
#: bytes of JSON from which decoding and the hashable conversion run with the
#: cyclic GC paused (see :func:`snorky_sync.wire.gc_paused`)
_BIG = 8192
_paused = wire.gc_paused


def _shape(msg: Any) -> str:
    """What an invalid envelope was, for the log: its type and, for an object,
    its first keys (never its whole repr: that could be huge or deep)."""
    if type(msg) is dict:
        keys = ", ".join(printable(k, 40) for k in list(msg)[:5])
        return f"an object with keys {keys}" + (", ..." if len(msg) > 5 else "")
    return f"a {'JSON array' if type(msg) is list else type(msg).__name__}"


class ServiceRegistry:
    """Tracks services by name and delivers messages to them.

    ``ServiceRegistry(services=None, *, broker=None)``: as in Snorky 0.1, the
    services given are registered in order.  ``broker`` (optional) connects
    this registry's services to other processes (:mod:`snorky_sync.brokers`);
    default: this process only.  Anything else than a list of services, or
    than a broker, is refused with a TypeError.
    """

    def __init__(self, services: Iterable[Service] | None = None, *, broker: Broker | None = None) -> None:
        from .brokers.base import Broker
        from .services.base import Service

        if isinstance(services, Broker):
            raise TypeError("ServiceRegistry(services=None, *, broker=None): got a broker "
                            f"({type(services).__name__}) as the services; pass it as broker=...")
        if isinstance(services, (Service, str, bytes, dict)) or (
                services is not None and not hasattr(services, "__iter__")):
            raise TypeError("ServiceRegistry(services=None, *, broker=None): services is a list "
                            f"of services, got {type(services).__name__}")
        if broker is not None and not isinstance(broker, Broker):
            raise TypeError("ServiceRegistry(broker=...) wants a snorky_sync.brokers.Broker, "
                            f"got {type(broker).__name__}")
        self.services: dict[str, Any] = {}
        self.broker = broker
        for service in services or ():
            self.register_service(service)

    @property
    def registered_services(self) -> dict[str, Any]:
        """The services by name (Snorky 0.1's name for :attr:`services`, the same dict)."""
        return self.services

    def __repr__(self) -> str:
        return f"<ServiceRegistry {sorted(self.services)}>"

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self.services.values()))

    def __contains__(self, name: str) -> bool:
        return name in self.services

    def register_service(self, service: Service) -> None:
        """Add a service; its name must be unique in this registry."""
        from .services.base import Service

        if not isinstance(service, Service):
            what = (f"the class {service.__name__} (instantiate it: {service.__name__}(name))"
                    if isinstance(service, type) else type(service).__name__)
            raise TypeError(f"register_service wants a Service instance, got {what}")
        if service.name in self.services:
            raise ValueError(f"a service named {service.name!r} is already registered")
        self.services[service.name] = service
        if self.broker is not None:
            service.use_broker(self.broker)

    def unregister_service(self, service: Service | str) -> None:
        """Remove a service (by instance or by name)."""
        name = service if isinstance(service, str) else service.name
        del self.services[name]

    def get_service(self, name: str) -> Service | None:
        """The service of that name, or None."""
        return self.services.get(name)

    def process_message_raw(self, client: Client, raw: bytes | str) -> None:
        """Decode one frame's text and route it (invalid input is logged, dropped)."""
        big = len(raw) > _BIG
        try:  # orjson: more than 1024 levels of nesting is a DecodeError
            msg = _paused(_decode, raw) if big else _decode(raw)
        except _DecodeError as exc:
            counters["frames_invalid"] += 1
            _warn.warning("invalid-json", "invalid JSON from %s (%s): %s",
                          printable(client.remote_address), printable(exc.msg), printable(raw[:80]))
            return
        self._route(client, msg, _may_be_deep(raw), big)

    def process_message_from(self, client: Client, msg: Any) -> None:
        """Route a decoded envelope to its service."""
        self._route(client, msg, True, False)

    def _route(self, client: Client, msg: Any, may_be_deep: bool, big: bool) -> None:
        # may_be_deep False: the text it came from proves it nests at most MAX_DEPTH levels
        if type(msg) is not dict or "service" not in msg or "message" not in msg:
            counters["frames_invalid"] += 1
            _warn.warning("invalid-envelope",
                          "invalid envelope from %s (needs 'service' and 'message'): %s",
                          printable(client.remote_address), _shape(msg))
            return
        name = msg["service"]
        service = self.services.get(name) if type(name) is str else None
        if service is None:
            counters["frames_unknown_service"] += 1
            if _warn.allow("unknown-service"):
                log.warning("message from %s for unknown service %s, dropped unanswered (as in "
                            "Snorky 0.1: a page's call to it waits for its callTimeout); "
                            "registered services: %s. Check the service name the page "
                            "uses, or register the service in the registry this endpoint serves",
                            printable(client.remote_address),
                            f"'{printable(name, 80)}'" if type(name) is str else _shape(name),
                            self._names())
            return
        message = msg["message"]
        if service.hashable_messages:
            try:
                if big:
                    message = _paused(make_hashable, message, _MAX_DEPTH)
                    msg["message"] = message  # (our own envelope) the plain tree is freed now
                else:
                    message = make_hashable(message, _MAX_DEPTH)
            except NestingTooDeep:
                self._too_deep(client, service, message)
                return
        elif may_be_deep and _too_deep(message, _MAX_DEPTH):
            self._too_deep(client, service, message)
            return
        service.process_message_from(client, message)

    def _names(self, limit: int = 30) -> str:
        names = sorted(self.services)
        if not names:
            return "none"
        return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")

    @staticmethod
    def _too_deep(client: Client, service: Service, message: Any) -> None:
        counters["frames_invalid"] += 1
        service.refuse_message(client, message, f"nested more than {_MAX_DEPTH} levels deep")

    def client_connected(self, client: Client) -> None:
        """Tell every service about a new client."""
        for service in list(self.services.values()):
            try:
                service.client_connected(client)
            except Exception:
                log.exception("%r.client_connected failed for %r", service, client)

    def client_disconnected(self, client: Client) -> None:
        """Tell every service a client left, so they drop its state."""
        for service in list(self.services.values()):
            try:
                service.client_disconnected(client)
            except Exception:
                log.exception("%r.client_disconnected failed for %r", service, client)

"""Per-connection limits and publish rules from settings, for mounted services.

The built-in services carry their limits as attributes (``max_subscriptions``,
``max_cursors``, ...: constructor keywords, with the class attributes as defaults).  When a registry is mounted on a public endpoint
(``Snorky.websocket`` / ``Snorky.sockjs``), :func:`configure_services` sets
those attributes from the extension's :class:`~snorky_sync.settings.Settings`
(``SNORKY_MAX_SUBSCRIPTIONS``, ``SNORKY_MAX_CURSOR_SIZE``,
``SNORKY_BACKEND_ONLY_CHANNELS``, ``SNORKY_PERSONAL_CHANNELS``, ``SNORKY_SLOW_COMMAND_TIME`` of every RPC service, ...), so a user's own app gets them
exactly as the default app does.  A value the code set itself (a constructor
keyword such as ``CursorsService(max_cursors=4)`` or
``PubSubService(backend_only=..., personal_channels=...)``, on the instance, or in a subclass, under
the limit's name or its older alias such as ``MAX_CURSORS``) is kept;
if a setting was also configured to something else, mounting fails with a
ValueError naming both (a setting is never silently not in effect).
Services registered after the registry is mounted are not configured.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .base import RPCService, Service
from .chat import ChatService
from .cursors import CursorsService
from .datasync import DataSyncService
from .patterns import ChannelPatterns
from .pubsub import PubSubService

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import ServiceRegistry
    from ..settings import Settings

__all__ = ["configure_services", "LIMITS"]

#: service class -> [(attribute, setting)]
LIMITS: dict[type[Service], list[tuple[str, str]]] = {
    PubSubService: [("max_subscriptions", "max_subscriptions"),
                    ("max_channel_size", "max_channel_size"),
                    ("max_presence_entries", "max_presence_entries"),
                    ("max_presence_meta_size", "max_presence_meta_size")],
    ChatService: [("max_channels", "max_subscriptions"),
                  ("max_channel_size", "max_channel_size"),
                  ("max_message_size", "max_chat_message_size"),
                  ("max_presence_entries", "max_presence_entries"),
                  ("max_presence_meta_size", "max_presence_meta_size")],
    CursorsService: [("max_documents", "max_subscriptions"),
                     ("max_document_size", "max_channel_size"),
                     ("max_cursors", "max_cursors"),
                     ("max_cursor_size", "max_cursor_size")],
    DataSyncService: [("max_subscriptions", "max_subscriptions"),
                      ("max_pending", "max_pending_subscriptions"),
                      ("max_pending_per_requester", "max_pending_per_requester")],
    RPCService: [("slow_command_time", "slow_command_time")],
}


def _default(settings: Settings, name: str) -> Any:
    for f in fields(settings):
        if f.name == name:
            return f.default
    raise AttributeError(name)


def _conflict(service: Service, attr: str, own: Any, setting: str, value: Any) -> ValueError:
    return ValueError(f"{service!r}: {attr} is {own!r} in the code but SNORKY_{setting.upper()} "
                      f"is {value!r}; remove one of them")


def _configure(service: Service, base: type, attr: str, settings: Settings, setting: str) -> None:
    value = getattr(settings, setting)
    own = getattr(service, attr)
    set_in_code = attr in vars(service) or getattr(type(service), attr) != getattr(base, attr)
    if not set_in_code:
        setattr(service, attr, value)
    elif own != value and value != _default(settings, setting):
        raise _conflict(service, attr, own, setting, value)


def configure_services(registry: ServiceRegistry, settings: Settings,
                       authenticate: Callable[[Any], Any] | None = None) -> None:
    """Apply ``settings``' per-connection limits, ``backend_only_channels``
    and ``personal_channels`` to the built-in services of ``registry`` (see the module), and refuse an
    ``authenticate`` hook whose promise cannot hold in this deployment
    (single-use tokens remembered per process, served by several)."""
    if getattr(authenticate, "single_use", False):
        broker = getattr(registry, "broker", None)
        if settings.redis_url or (broker is not None and broker.distributed) or settings.workers > 1:
            raise ValueError("ConnectionTokens(single_use=True) remembers used tokens in one "
                             "process, but this endpoint is served by several (SNORKY_REDIS_URL "
                             "or SNORKY_WORKERS > 1): a token could be used once per process")
    for service in registry:
        for base, limits in LIMITS.items():
            if isinstance(service, base):
                for attr, setting in limits:
                    _configure(service, base, attr, settings, setting)
        if isinstance(service, (PubSubService, ChatService)):
            personal = settings.personal_channels
            if service.personal_channels is None:
                service.personal_channels = bool(personal)
            elif personal is not None and service.personal_channels != personal:
                raise _conflict(service, "personal_channels", service.personal_channels,
                                "personal_channels", personal)
        if isinstance(service, PubSubService):
            wanted = settings.backend_only_channels
            if service.backend_only is None:
                service.backend_only = ChannelPatterns(wanted or ())
            elif wanted is not None and service.backend_only != ChannelPatterns(wanted):
                raise _conflict(service, "backend_only", list(service.backend_only.patterns),
                                "backend_only_channels", ",".join(wanted))

"""snorky_sync: Snorky's real-time WebSocket services, rebuilt on gevent and Flask.

The public face; everything here is a re-export::

    from snorky_sync import ServiceRegistry, Snorky, serve
    from snorky_sync.services.pubsub import PubSubService
"""
from typing import TYPE_CHECKING

from .client import Client
from .embedded import serve
from .endpoints.websocket import Reject
from .flask_ext import Snorky
from .logs import configure_logging
from .registry import ServiceRegistry
from .services.base import (
    Request,
    RPCError,
    RPCService,
    Service,
    rpc_asynchronous,
    rpc_command,
)
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

__all__ = [
    "Client", "Reject", "RPCError", "RPCService", "Request", "Service",
    "ServiceRegistry", "Settings", "Snorky", "rpc_asynchronous", "rpc_command",
    "serve", "create_app", "configure_logging",
]
__version__ = "0.2.0"
version = __version__
"""Snorky 0.1's name for the version string."""


def create_app(settings: Settings | None = None) -> "Flask":
    """The default application (see :mod:`snorky_sync.app`)."""
    from .app import create_app as _create_app
    return _create_app(settings)

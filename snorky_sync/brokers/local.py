"""The in-process broker: one process, nobody else to tell."""
from __future__ import annotations

from .base import Broker

__all__ = ["LocalBroker"]


class LocalBroker(Broker):
    """The default: services already delivered locally; there are no other processes."""

    state = "local"

    def publish(self, topic: str, data: bytes) -> None:
        pass

"""The broker interface."""
from __future__ import annotations

import os
from typing import Callable

__all__ = ["Broker", "Handler"]

Handler = Callable[[bytes], None]


class Broker:
    """Delivers ``publish(topic, data)`` to the handlers other processes
    registered for ``topic`` with :meth:`subscribe` (never back to this one).

    Handlers run in the broker's listener greenlet, one message at a time, in
    the order each publishing process published.
    """

    #: "local", "connected", "disconnected" — shown by /healthz
    state = "local"

    def __init__(self) -> None:
        self.origin = os.urandom(8)  # this process, as seen by the others
        self.handlers: dict[str, Handler] = {}

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Deliver messages other processes publish on ``topic`` to ``handler``."""
        if topic in self.handlers:
            raise ValueError(f"topic {topic!r} already has a handler")
        self.handlers[topic] = handler

    def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to the other processes' handlers of ``topic``."""
        raise NotImplementedError

    def start(self) -> None:
        """Begin listening (idempotent)."""

    def stop(self) -> None:
        """Stop listening."""

    def health(self) -> dict:
        return {"broker": type(self).__name__, "state": self.state}

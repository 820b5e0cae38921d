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
        self.echo: set[str] = set()   # topics whose handler also gets this process's messages

    #: False for the in-process broker: there is nobody else to tell.
    distributed = False

    def subscribe(self, topic: str, handler: Handler, echo: bool = False) -> None:
        """Deliver messages published on ``topic`` to ``handler``.

        By default only other processes' messages (this one delivered locally
        already).  ``echo=True`` delivers this process's own messages too, in
        the same order every process sees them: use it when all processes
        must apply a sequence of events in one agreed order.
        """
        if topic in self.handlers:
            raise ValueError(f"topic {topic!r} already has a handler")
        self.handlers[topic] = handler
        if echo:
            self.echo.add(topic)

    def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to the other processes' handlers of ``topic``."""
        raise NotImplementedError

    def flush(self, timeout: float = 5.0) -> None:
        """Block until everything published so far has left this process."""

    def start(self) -> None:
        """Begin listening (idempotent)."""

    def stop(self) -> None:
        """Stop listening."""

    def health(self) -> dict:
        return {"broker": type(self).__name__, "state": self.state}

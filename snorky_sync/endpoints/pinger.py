"""The pinger: one greenlet per WebSocket endpoint that pings quiet connections
and drops the ones that never answer."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent

from ..client import PING_FRAME
from ..logs import RateLimitedLogger
from ..metrics import counters

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Pinger"]

_warn = RateLimitedLogger(logging.getLogger("snorky_sync.websocket"))
_spawn = gevent.spawn


class Pinger:
    """Pings idle connections of one endpoint and drops the ones that never answer.

    One greenlet per endpoint wakes every ``ping_interval`` seconds: a
    connection that sent nothing since the last pass gets a ping; one that
    did not answer that ping by the next pass is dropped (so a dead peer goes
    within two to three intervals).  The reader only sets ``client.seen``:
    no timer per connection, no timeout per read.
    """

    def __init__(self, ping_interval: float) -> None:
        self.ping_interval = ping_interval
        self.clients: set[Client] = set()
        self.greenlet: gevent.Greenlet | None = None

    def add(self, client: Client) -> None:
        self.clients.add(client)
        if self.greenlet is None:
            self.greenlet = _spawn(self._run)

    def discard(self, client: Client) -> None:
        self.clients.discard(client)

    def _run(self) -> None:
        interval = self.ping_interval
        try:
            while self.clients:
                gevent.sleep(interval)
                for client in list(self.clients):
                    if client.is_closing:  # we sent a close: one more pass to answer it
                        if client.pinged:
                            client.abort()
                        client.pinged = True
                    elif client.seen:
                        client.seen = False
                        client.pinged = False
                    elif not client.pinged:
                        client.pinged = True
                        client.send_control(PING_FRAME)
                    else:
                        counters["dead_peers_dropped"] += 1
                        _warn.info("ping-timeout", "dropping %s (#%d): no answer to ping within %ss",
                                 client.remote_address, client.id, interval,
                                 extra={"conn": client.id, "remote": client.remote_address})
                        client.abort()
        finally:
            self.greenlet = None
            if self.clients:  # a client arrived as we were leaving
                self.greenlet = _spawn(self._run)

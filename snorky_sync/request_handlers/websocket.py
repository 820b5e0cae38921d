"""Snorky 0.1's ``SnorkyWebSocketHandler`` (Tornado): see :mod:`snorky_sync.request_handlers`."""
from . import tornado_only

raise tornado_only("websocket", "SnorkyWebSocketHandler",
                   "snorky_sync.Snorky(app).websocket('/ws', registry)")

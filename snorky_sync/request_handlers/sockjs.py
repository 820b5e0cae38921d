"""Snorky 0.1's ``SnorkySockJSHandler`` (Tornado): see :mod:`snorky_sync.request_handlers`."""
from . import tornado_only

raise tornado_only("sockjs", "SnorkySockJSHandler",
                   "snorky_sync.Snorky(app).sockjs('/sockjs', registry)")

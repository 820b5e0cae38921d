"""Snorky 0.1's ``BackendHTTPHandler`` (Tornado): see :mod:`snorky_sync.request_handlers`."""
from . import tornado_only

raise tornado_only("http", "BackendHTTPHandler",
                   "snorky_sync.Snorky(app).backend('/backend', registry, api_key=KEY)")

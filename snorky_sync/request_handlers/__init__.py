"""Snorky 0.1's Tornado request handlers have Flask equivalents in snorky_sync.

Importing any of ``snorky_sync.request_handlers.http``, ``.websocket`` or
``.sockjs`` raises ImportError naming the replacement::

    0.1 (Tornado)                                   snorky_sync (Flask)
    SnorkyWebSocketHandler.get_route(registry, p)   Snorky(app).websocket(p, registry)
    (r"/backend", BackendHTTPHandler, {...})        Snorky(app).backend(p, registry, api_key=...)
    SnorkySockJSHandler.get_routes(registry, p)     Snorky(app).sockjs(p, registry)
"""
from __future__ import annotations

__all__ = ["tornado_only"]


def tornado_only(module: str, names: str, equivalent: str) -> ImportError:
    """The ImportError raised by the Tornado-only modules."""
    return ImportError(
        f"snorky_sync.request_handlers.{module} ({names}) was Snorky 0.1's Tornado wiring; "
        f"snorky_sync is served by Flask: use {equivalent} (see docs/porting.md, "
        "'Porting from Snorky 0.1')", name=f"snorky_sync.request_handlers.{module}")

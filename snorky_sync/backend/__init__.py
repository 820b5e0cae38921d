"""The backend connector for web applications: call snorky_sync's backend from Python.

::

    from snorky_sync.backend import HTTPTransport, SnorkyBackend

    snorky = SnorkyBackend(HTTPTransport("http://127.0.0.1:8002/backend", key=KEY))
    snorky.publish("news", {"title": "Hello"})                  # pubsub_backend.publish
    token = snorky.authorize_subscription([{"dealer": "todos", "query": None}])
    snorky.publish_deltas([{"type": "insert", "model": "Todo", "data": {...}}])
    snorky.call("calc", "add", a=1, b=2)                       # any backend service

Snorky 0.1's names work as in 0.1: ``SnorkyHTTPTransport(url, key)`` (the
same class as :class:`HTTPTransport`), ``SnorkyBackend(transport, json=module)``,
``backend.send(message)`` and ``backend.call(service, command, **params)``.

``call`` returns the response's ``data`` or raises :class:`SnorkyError` with
the service's error text; transport problems (server unreachable, timeout,
401, a body that is not the expected JSON) raise :class:`SnorkyTransportError`
(a RuntimeError, as 0.1 raised).
"""
from .connector import SnorkyBackend, SnorkyError, SnorkyTransportError
from .transports import HTTPTransport, LocalTransport, SnorkyHTTPTransport

__all__ = ["SnorkyBackend", "HTTPTransport", "SnorkyHTTPTransport", "LocalTransport",
           "SnorkyError", "SnorkyTransportError"]

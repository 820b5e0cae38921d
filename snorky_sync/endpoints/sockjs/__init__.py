"""The SockJS endpoint (protocol 0.3.3, what sockjs-client 1.x speaks).

A SockJS session is a :class:`~snorky_sync.client.Client` like a WebSocket
connection: the same registry calls, encode-once frames, bounded queue,
limits, identity hooks and metrics.  Modules:

* :mod:`.protocol` — paths, frames, transport framing, bodies (no I/O)
* :mod:`.session` — the Client subclass for the HTTP transports
* :mod:`.manager` — one endpoint's sessions, heartbeats and expiry
* :mod:`.transports` — receive requests as streaming WSGI responses; sends
* :mod:`.websocket` — SockJS framing on the WebSocket endpoint's machinery
* :mod:`.relay` — requests for a session held by another process, through the broker
* :mod:`.view` — the Flask view tying them together
"""
from .view import SockJSOptions, make_sockjs_view

__all__ = ["SockJSOptions", "make_sockjs_view"]

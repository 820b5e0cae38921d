"""SockJS over WebSocket (``/<server>/<session>/websocket``).

The connection is served by :mod:`snorky_sync.endpoints.websocket` itself
(handshake, reader, pinger, limits); only the framing differs: the client
sends JSON arrays of strings (broken JSON cuts the connection, as the
protocol asks), the server sends ``o``, ``a[...]`` and ``c[...]`` text frames.
The outbound queue holds the usual encode-once frames and is turned into one
``a[...]`` frame per flush.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import wire
from ...client import Client
from ...client import close_frame as ws_close_frame
from ...logs import RateLimitedLogger, printable
from ...metrics import counters, transport_counters
from ..limits import RATE_EXCEEDED, InputBudget
from . import protocol
from .session import Raw, quoted

if TYPE_CHECKING:  # pragma: no cover
    from ..websocket import Target, WebSocketOptions

__all__ = ["SockJSWebSocketClient", "make_process"]

_frame_text = wire.frame_text
_OPEN = Raw(_frame_text(protocol.OPEN))
_warn = RateLimitedLogger(logging.getLogger("snorky_sync.sockjs"))


def _ws_code(code: int) -> int:
    # a WebSocket close code must be 1000-1014 (the sendable ones) or 3000-4999
    return code if (3000 <= code < 5000 or code in (1000, 1001, 1008, 1011, 1013)) else 1000


class SockJSWebSocketClient(Client):
    """A WebSocket connection speaking SockJS framing; ``budget`` counts its
    messages (a frame may carry many; the reader counts frames and bytes)."""

    __slots__ = ("budget",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget: InputBudget | None = None
        transport_counters["sessions_opened", "websocket"] += 1
        self.send_control(_OPEN)

    def send_control(self, data: bytes) -> None:
        super().send_control(Raw(data))

    def _take(self) -> bytes:
        q = self._queue
        self._queue = []
        self._queued_bytes = 0
        parts: list[bytes] = []
        msgs: list[bytes] = []
        n = 0
        for item in q:
            if type(item) is Raw:
                if msgs:
                    parts.append(_frame_text(protocol.message_frame(msgs)))
                    msgs = []
                parts.append(item)
            else:
                msgs.append(quoted(item))
                n += 1
        if msgs:
            parts.append(_frame_text(protocol.message_frame(msgs)))
        data = b"".join(parts)
        counters["frames_out"] += n
        counters["bytes_out"] += len(data)
        transport_counters["messages_out", "websocket"] += n
        return data

    def _close_frames(self, code: int, reason: str) -> list[bytes]:
        """``c[code,"reason"]``, then the WebSocket close frame."""
        transport_counters["sessions_closed", "websocket"] += 1
        return [Raw(_frame_text(protocol.close_frame(code, reason))),
                Raw(ws_close_frame(_ws_code(code), reason))]


def make_process(target: Target, opts: WebSocketOptions) -> Callable[[Client, bytes], None]:
    """The reader's handler: each string of a frame's array is one message,
    each counted against the message rate before any is processed (one
    frame of 30,000 messages is 30,000 messages: over the rate, the
    connection closes with 1008 and none of them runs)."""
    process = target.process_message_raw
    rate, burst = opts.rate_limit, opts.rate_burst

    def process_sockjs(client: Client, data: bytes) -> None:
        if not data:
            return  # the protocol: empty frames are ignored
        try:
            messages = protocol.decode_messages(data)
        except protocol.BodyError:
            counters["frames_invalid"] += 1
            client.abort()  # the protocol: broken JSON terminates the connection
            return
        if rate:
            budget = getattr(client, "budget", None)
            if budget is None:
                budget = InputBudget(rate, burst, 0, 0)
                try:
                    client.budget = budget  # type: ignore[attr-defined]  # SockJSWebSocketClient's slot
                except AttributeError:
                    pass
            if not budget.charge(len(messages), 0):
                if not client.is_closing:
                    counters["rate_limited_disconnects"] += 1
                    _warn.warning("rate-limit", "closing SockJS WebSocket %s (#%d): more than %s "
                                  "messages/s (burst %s)", printable(client.remote_address),
                                  client.id, rate, burst)
                    client.close(1008, RATE_EXCEEDED)
                return
        transport_counters["messages_in", "websocket"] += len(messages)
        for message in messages:
            if client.is_closing:
                break
            process(client, message)

    return process_sockjs

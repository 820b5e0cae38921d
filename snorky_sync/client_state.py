r"""A connection's two state machines, as data (:class:`~snorky_sync.client.Client`).

``Client.state`` (:class:`Lifecycle`)::

    OPEN --close()--> CLOSING --gone--> CLOSED
      \--gone (abort, reset, the peer's close)--> CUT

``Client.writing`` (:class:`Writing`): who writes the queue next::

    IDLE --send--> QUEUED --flush, all written--> IDLE
                     \--flush, socket full--> WRITER --drained--> IDLE
    (a SockJS session: IDLE <-> PULLED, its receiving request takes the queue)
"""
from __future__ import annotations

import enum

__all__ = ["Lifecycle", "Writing"]


class Lifecycle(enum.Enum):
    """Where a connection is in its life (``Client.state``)."""

    OPEN = "open"        # frames go out
    CLOSING = "closing"  # our close frame is queued: only protocol bytes go out after it
    CLOSED = "closed"    # gone, after our close
    CUT = "cut"          # gone without our close (aborted, reset, or the peer closed first)


class Writing(enum.Enum):
    """Who writes a connection's queue next (``Client.writing``)."""

    IDLE = "idle"        # nobody: the next frame puts it on its flusher's list
    QUEUED = "queued"    # on its flusher's list: written at the next flush
    WRITER = "writer"    # the socket was full: a writer greenlet of its own drains it
    PULLED = "pulled"    # a SockJS session: its receiving request takes the queue when ready

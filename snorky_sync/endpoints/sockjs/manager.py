"""The sessions of one SockJS endpoint in this process, and their timers.

One sweeper greenlet per endpoint (not a timer per session) sends
heartbeats to idle receivers every ``heartbeat`` seconds and forgets
sessions that no request has received from for ``disconnect_delay``
seconds: their client disconnects from every service.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import gevent

from ...logs import RateLimitedLogger, printable
from ...metrics import counters, transport_counters
from .session import SockJSSession

if TYPE_CHECKING:  # pragma: no cover
    from ..websocket import Target
    from .view import SockJSOptions

__all__ = ["SessionManager"]

log = logging.getLogger("snorky_sync.sockjs")
_debug = RateLimitedLogger(log, burst=200, period=1.0)  # per session: DEBUG, within reason

_monotonic = time.monotonic


class SessionManager:
    """Creates, finds, ends and expires the sessions of one endpoint."""

    def __init__(self, target: Target, opts: SockJSOptions, name: str) -> None:
        self.target = target
        self.opts = opts
        self.name = name
        self.sessions: dict[str, SockJSSession] = {}
        self._ident_keys: dict[SockJSSession, Any] = {}
        self._sweeper: gevent.Greenlet | None = None
        self.relay: Any = None  # a Relay when sessions are shared with other processes

    def get(self, sid: str) -> SockJSSession | None:
        return self.sessions.get(sid)

    def create(self, sid: str, transport: str, remote: str, identity: Any,
               claim: str | None = None, login_session: str | None = None) -> SockJSSession:
        """A new session (the caller checked access); services hear of it now.
        ``login_session``: the login session it is opened with (``Snorky.logout``)."""
        session = SockJSSession(self, sid, transport, remote, identity)
        session.claim = claim
        session.login_session = login_session
        self.sessions[sid] = session
        self._ident_keys[session] = self.opts.connections.track(session)
        transport_counters["sessions_opened", transport] += 1
        _debug.debug("open", "SockJS session #%d open from %s (%s)", session.id, printable(remote),
                     transport)
        if self._sweeper is None:
            self._sweeper = gevent.spawn(self._sweep)
        self.target.client_connected(session)
        return session

    def ended(self, session: SockJSSession) -> None:
        """The session closed (any reason): services forget its client, once."""
        if session.ended:
            return
        session.ended = True
        self.opts.connections.untrack(session, self._ident_keys.pop(session, None))
        transport_counters["sessions_closed", session.transport] += 1
        _debug.debug("close", "SockJS session #%d from %s closed", session.id,
                     printable(session.remote_address))
        try:
            self.target.client_disconnected(session)
        except Exception:
            log.exception("client_disconnected failed for %r", session)
        if self.relay is not None:
            self.relay.session_ended(session)

    def remove(self, session: SockJSSession) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
        session.destroy()

    def _sweep(self) -> None:
        opts = self.opts
        tick = max(0.05, min(opts.heartbeat, opts.disconnect_delay) / 2)
        last_beat = _monotonic()
        try:
            while self.sessions:
                gevent.sleep(tick)
                now = _monotonic()
                beat = now - last_beat >= opts.heartbeat
                if beat:
                    last_beat = now
                limit = now - opts.disconnect_delay
                for session in list(self.sessions.values()):
                    if session.receiver is None:
                        if session.detached_at < limit:
                            if session.closing is None:
                                counters["sockjs_sessions_expired"] += 1
                                # a closed tab, as a WebSocket's reset: DEBUG
                                _debug.debug("expired", "SockJS session #%d of %s expired: no "
                                             "request for %ss", session.id,
                                             printable(session.remote_address),
                                             opts.disconnect_delay)
                            self.remove(session)
                    elif beat:
                        session.heartbeat()
        finally:
            self._sweeper = None
            if self.sessions:
                self._sweeper = gevent.spawn(self._sweep)

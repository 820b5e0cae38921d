"""Login sessions: the connections a browser's login opened, closed when it
logs out (issue #24 item 3), on every process of the app.

An endpoint whose identity comes from cookies (``session_identity``, or a
hook marked with :func:`~snorky_sync.auth.uses_cookies`) gives its app a
:class:`LoginSessions`:

* a mark in each logged-in Flask session: after a request that read or
  changed the session, when one of ``session_identity``'s keys is set and the
  session has no mark yet, a random one is put under
  :data:`LOGIN_SESSION_FIELD` (the login view's response carries it, so every
  connection the page opens afterwards is tagged with it:
  ``Client.login_session``);
* a :class:`~snorky_sync.services.control.ControlService` named
  :data:`CONTROL_NAME`, mounted like any registry of the app (with
  ``SNORKY_REDIS_URL``, on the app's Redis broker), which closes a session's
  connections on every process: :meth:`Snorky.logout
  <snorky_sync.flask_ext.Snorky.logout>` and :meth:`Snorky.disconnect_session
  <snorky_sync.flask_ext.Snorky.disconnect_session>` call it.
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Response

    from .runtime import Runtime
    from .services.control import ControlService

__all__ = ["LoginSessions", "LOGIN_SESSION_FIELD", "CONTROL_NAME"]

#: the Flask session key of the login session's mark
LOGIN_SESSION_FIELD = "_snorky_login"
#: the name of the app's login-session ControlService (its broker topic: control:logout)
CONTROL_NAME = "logout"

_EXTENSION = "snorky_sync.login_sessions"


class LoginSessions:
    """One app's login sessions (see the module)."""

    def __init__(self, runtime: Runtime) -> None:
        from .registry import ServiceRegistry
        from .services.control import ControlService

        #: the session keys of the app's ``session_identity`` endpoints
        self.keys: list[str] = []
        self.control: ControlService = ControlService(CONTROL_NAME)
        runtime.mount(ServiceRegistry([self.control]))
        runtime.app.after_request(self._stamp)

    @staticmethod
    def of(runtime: Runtime, create: bool = True) -> LoginSessions | None:
        """``runtime``'s app's LoginSessions (made when ``create``; else None if none)."""
        extensions = runtime.app.extensions
        sessions: LoginSessions | None = extensions.get(_EXTENSION)
        if sessions is None and create:
            sessions = extensions[_EXTENSION] = LoginSessions(runtime)
        return sessions

    def add_key(self, key: str) -> None:
        if key not in self.keys:
            self.keys.append(key)

    def _stamp(self, response: Response) -> Response:
        """After a request: a logged-in session without a mark gets one.  A
        request that did not touch the session is left alone: the session is
        looked at without the ``flask.session`` proxy, which would mark it
        accessed (and every response ``Vary: Cookie``)."""
        from flask.globals import request_ctx
        from flask.sessions import NullSession

        state = vars(request_ctx._get_current_object())  # type: ignore[attr-defined]
        if "_session" in state:
            raw = state["_session"]  # Flask 3.1: opened on first use
        elif "session" in state:
            raw = state["session"]  # before 3.1: the context's plain attribute
        else:  # a Flask whose context keeps it elsewhere: the public proxy (opens it)
            from flask import session as raw
        if raw is None or isinstance(raw, NullSession) or not self.keys:
            return response
        if not (getattr(raw, "accessed", True) or getattr(raw, "modified", True)):
            return response
        if LOGIN_SESSION_FIELD not in raw and any(raw.get(k) is not None for k in self.keys):
            raw[LOGIN_SESSION_FIELD] = secrets.token_urlsafe(16)
        return response

    def logout(self, reason: str) -> int:
        """In a request: close the connections opened with its login session,
        on every process, and take the mark out of the session (the next
        login gets a new one).  How many this process closed."""
        from flask import session

        mark = session.pop(LOGIN_SESSION_FIELD, None)
        if mark is None:
            return 0
        from . import wire

        identities: dict[Any, Any] = {}
        for key in self.keys:
            identity = session.get(key)
            if identity is not None:
                identities[wire.json_key(identity)] = identity
        return sum(self.control.disconnect_session(identity, str(mark), reason=reason)
                   for identity in identities.values())

"""The attack suite (docs/architecture.md, "How it is tested").

One module per class of attack from issue #21; each test is an attack, run
against every transport and serving mode it applies to, that fails when the
defence it names is gone.  Fixtures shared by several modules live here;
``MODES`` are the three serving modes (embedded, gunicorn -k gevent,
gunicorn with the gevent-websocket worker).
"""
from __future__ import annotations

import pytest

from support.servers import WORKER_CLASSES, serving

MODES = list(WORKER_CLASSES)


@pytest.fixture(scope="module", params=MODES)
def default_server(request):
    """The default app (wsgi:app, demos off) under each serving mode; a module
    sets ``SERVER_ENV`` for extra settings."""
    env = getattr(request.module, "SERVER_ENV", {})
    yield from serving(request, request.param, "wsgi:app", env)


@pytest.fixture(scope="module", params=MODES)
def cookie_server(request):
    """tests/security/cookie_app.py (cookie identities on /ws and /sockjs, plus
    anonymous and token SockJS endpoints) under each serving mode; a module
    sets ``SERVER_ENV`` for extra settings."""
    env = {"SOCKJS_DISCONNECT_DELAY": "3", **getattr(request.module, "SERVER_ENV", {})}
    yield from serving(request, request.param, "tests.security.cookie_app:app", env)

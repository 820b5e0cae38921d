"""What the token tests share (test_jwt_tokens, test_token_expiry,
test_token_refresh): the app's secret, HS256 tokens, and the server fixture's
body, which starts tests/support/token_app.py under a serving mode."""
from __future__ import annotations

import time

import jwt

from support.servers import WORKER_CLASSES, serving

__all__ = ["MODES", "SECRET", "hs256", "token_server"]

#: every serving mode: embedded, gunicorn -k gevent, gunicorn -k geventwebsocket's worker
MODES = list(WORKER_CLASSES)

SECRET = "token-tests-secret-0123456789-abcdefgh"


def hs256(sub: str, exp: float | None = None, ttl: float | None = None, **claims) -> str:
    """An HS256 JWT of token_app's secret for ``sub``, expiring at ``exp`` (or
    ``ttl`` seconds from now; neither: no ``exp``)."""
    body = {"sub": sub, **claims}
    if ttl is not None:
        exp = time.time() + ttl
    if exp is not None:
        body["exp"] = int(exp)
    return jwt.encode(body, SECRET, algorithm="HS256")


def token_server(request, env: dict | None = None):
    """The body of a module-scoped server fixture parametrized over MODES:
    ``yield from token_server(request)``."""
    yield from serving(request, request.param, "tests.support.token_app:app",
                       {"TEST_SECRET": SECRET, **(env or {})}, what="token_app")

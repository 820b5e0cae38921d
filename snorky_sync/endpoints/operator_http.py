"""The operator page: a static page next to a mounted backend (docs/operator.md).

``Snorky.backend(path, registry, api_key=...)`` serves it at ``PATH/operator``
when ``registry`` has a :class:`~snorky_sync.services.control.ControlService`
(the default app: ``/backend/operator``).  The page is the same bytes for
everybody and carries no data: in the browser it asks for the backend key
(kept in ``sessionStorage``, sent only as ``X-Backend-Key`` to ``PATH``) and
calls the control service's ``connections``, ``channels``, ``presenceStats``,
``presence`` and ``disconnect`` like any backend would.

Its three files (``snorky_sync/operator/``) are served with a strict
Content-Security-Policy (scripts, styles and requests from this origin only,
no inline script, no form submission, no framing), ``X-Frame-Options: DENY``,
``nosniff``, ``no-referrer`` and ``no-store``; never through the public
``/snorky_sync/static`` folder.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from importlib import resources

from flask import Response, request

from . import local_port

__all__ = ["OPERATOR_FILES", "SECURITY_HEADERS", "make_operator_views"]

#: name -> MIME type of the page's files (anything else: 404)
OPERATOR_FILES = {"operator.js": "text/javascript", "operator.css": "text/css"}

#: the headers of every response of the page
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _read(name: str) -> bytes:
    return resources.files("snorky_sync").joinpath(f"operator/{name}").read_bytes()


def _answer(body: bytes | str, status: int, mimetype: str) -> Response:
    response = Response(body, status=status, mimetype=mimetype)
    response.headers.update(SECURITY_HEADERS)
    return response


def make_operator_views(backend_path: str, control: str, only_port: int | None = None
                        ) -> tuple[Callable[[], Response], Callable[[str], Response]]:
    """The page's two views: ``(page, asset)``, for ``PATH/operator`` and
    ``PATH/operator/<name>``.  ``control``: the control service's name in
    the backend registry; ``only_port``: the backend's (404 elsewhere)."""
    template = _read("index.html").decode("utf-8")
    assets = {name: _read(name) for name in OPERATOR_FILES}

    def elsewhere() -> bool:
        return only_port is not None and local_port(request.environ) != only_port

    def snorky_operator_page() -> Response:
        if elsewhere():
            return _answer("Not found\n", 404, "text/plain")
        # the backend's URL and the service's name: configuration, not data (escaped anyway)
        page = (template.replace("{{backend}}", html.escape(request.script_root + backend_path))
                .replace("{{control}}", html.escape(control)))
        return _answer(page, 200, "text/html")

    def snorky_operator_asset(name: str) -> Response:
        if elsewhere() or name not in assets:
            return _answer("Not found\n", 404, "text/plain")
        return _answer(assets[name], 200, OPERATOR_FILES[name])

    return snorky_operator_page, snorky_operator_asset

"""Snorky 0.1's header convention for Flask views: a request carrying
``X-Snorky: Subscribe`` gets a DataSync subscription token in the
``X-Subscription-Token`` response header.

::

    @app.get("/api/todos")
    @subscription_in_response(backend, [{"dealer": "allTodos", "query": None}])
    def todos():
        return jsonify([t.as_dict() for t in Todo.query.all()])

The token is authorized *before* the view reads the database, so a change
committed meanwhile reaches the page as a delta instead of being lost.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

from flask import current_app, make_response, request

from ..backend.connector import SnorkyBackend, takes_keyword
from ..endpoints.admission import client_address

View = Callable[..., Any]

__all__ = ["subscription_in_response", "requested_subscription", "request_requester"]


def requested_subscription() -> bool:
    """Whether the current request carries ``X-Snorky: Subscribe``."""
    return request.headers.get("X-Snorky", "").lower() == "subscribe"


def request_requester(trusted_proxies: Sequence[str] | None = None) -> str:
    """Who the current request comes from, as a DataSync ``requester``:
    ``addr:`` and the client's address (``X-Forwarded-For`` believed only
    from ``trusted_proxies``; by default the app's Snorky extension's
    ``SNORKY_TRUSTED_PROXIES``, as for its WebSockets)."""
    if trusted_proxies is None:
        ext = current_app.extensions.get("snorky_sync")
        trusted_proxies = getattr(getattr(ext, "settings", None), "trusted_proxies", None)
    return "addr:" + client_address(request.environ, trusted_proxies)


def subscription_in_response(backend: SnorkyBackend,
                             items: list[dict[str, Any]] | Callable[..., list[dict[str, Any]]],
                             service: str = "datasync_backend",
                             requester: Callable[[], str | None] | None = request_requester,
                             ) -> Callable[[View], View]:
    """Decorate a view; ``items`` is the subscription's item list, or a
    function of the view's arguments returning it.  ``requester()`` names who
    the subscription is for (its pending subscriptions are capped on the
    server: one visitor cannot use up everyone's); by default the client's
    address, pass e.g. ``lambda: f"user:{current_user.id}"`` for signed-in
    users behind one address, or None for no requester (0.1)."""
    if not callable(getattr(backend, "authorize_subscription", None)):
        raise TypeError("subscription_in_response(backend, items): backend is a SnorkyBackend, "
                        f"got {type(backend).__name__}")

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not requested_subscription():
                return view(*args, **kwargs)
            wanted = items(*args, **kwargs) if callable(items) else items
            authorize = backend.authorize_subscription
            if takes_keyword(authorize, "requester"):
                who = requester() if requester is not None else None
                token = authorize(wanted, service=service, requester=who)
            else:  # an override of 0.2.0's authorize_subscription(items, service=...)
                token = authorize(wanted, service=service)
            response = make_response(view(*args, **kwargs))
            response.headers["X-Subscription-Token"] = token
            return response
        return wrapper
    return decorate

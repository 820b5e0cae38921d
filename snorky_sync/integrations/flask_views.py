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

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import make_response, request

__all__ = ["subscription_in_response", "requested_subscription"]


def requested_subscription() -> bool:
    """Whether the current request carries ``X-Snorky: Subscribe``."""
    return request.headers.get("X-Snorky", "").lower() == "subscribe"


def subscription_in_response(backend, items: list | Callable[..., list],
                             service: str = "datasync_backend"):
    """Decorate a view; ``items`` is the subscription's item list, or a
    function of the view's arguments returning it."""
    if not callable(getattr(backend, "authorize_subscription", None)):
        raise TypeError("subscription_in_response(backend, items): backend is a SnorkyBackend, "
                        f"got {type(backend).__name__}")

    def decorate(view):
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if not requested_subscription():
                return view(*args, **kwargs)
            wanted = items(*args, **kwargs) if callable(items) else items
            token = backend.authorize_subscription(wanted, service=service)
            response = make_response(view(*args, **kwargs))
            response.headers["X-Subscription-Token"] = token
            return response
        return wrapper
    return decorate

"""Snorky 0.1's Django REST framework views: a list that hands out a DataSync
subscription when the request asks for one (``X-Snorky: Subscribe`` ->
``X-Subscription-Token`` on the response)::

    from rest_framework import viewsets
    import snorky_sync.backend.django.rest_framework as snorky

    class TaskViewSet(snorky.ListSubscribeModelMixin, viewsets.ModelViewSet):
        queryset = Task.objects.all()
        serializer_class = TaskSerializer
        dealer = "AllTasks"
        dealer_query = None

The token is authorized before the list is read, so a change committed
while the list is being built reaches the page as a delta, never lost
between the list and the subscription.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from rest_framework import generics, mixins

from ..connector import takes_keyword
from . import authorize_subscription

# Django REST framework ships no type information (no stubs are a dependency):
# for mypy its classes are Any, so the views below subclass Any (allowed for
# this module only, in pyproject.toml) and requests and responses are Any.
ViewMethod = Callable[..., Any]

__all__ = ["SubscribeModelMixin", "ListSubscribeModelMixin", "ListSubscribeAPIView",
           "ListSubscribeCreateAPIView", "subscription_in_response"]


class SubscribeModelMixin:
    """What a subscription of this view is made of: ``dealer`` and ``dealer_query``."""

    request: Any  # set by Django REST framework's view
    queryset: Any  # the view's (GenericAPIView's) queryset

    dealer: str | None = None
    """The dealer name; default: the model's class name."""
    dealer_query: Any = None
    """The query sent to the dealer."""

    def get_dealer(self) -> str:
        """The dealer: ``dealer``, else the name of ``model`` (0.1) or of the queryset's model."""
        if self.dealer:
            return self.dealer
        model = getattr(self, "model", None)
        if model is None and getattr(self, "queryset", None) is not None:
            model = self.queryset.model
        if model is not None:
            name: str = model.__name__
            return name
        raise AttributeError("Missing dealer")

    def get_dealer_query(self) -> Any:
        """The query: ``dealer_query``."""
        return self.dealer_query

    def get_subscription_items(self) -> list[dict[str, Any]]:
        """``[{"dealer": get_dealer(), "query": get_dealer_query()}]``."""
        return [{"dealer": self.get_dealer(), "query": self.get_dealer_query()}]

    def requested_subscription(self) -> bool:
        """Whether the request carries ``X-Snorky: Subscribe``."""
        header: str = self.request.META.get("HTTP_X_SNORKY", "")
        return header.lower() == "subscribe"

    def get_subscription_requester(self) -> str | None:
        """Who the subscription is for (its pending subscriptions are capped
        per requester on the server): ``user:<pk>`` when signed in, else
        ``addr:<REMOTE_ADDR>`` (set by your proxy middleware, if any).
        Override it to name requesters otherwise, or return None (0.1)."""
        user = getattr(self.request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return f"user:{user.pk}"
        return "addr:" + str(self.request.META.get("REMOTE_ADDR", "-"))


def subscription_in_response(method: ViewMethod) -> ViewMethod:
    """Decorates a view method: when the request asks for a subscription, the
    response carries its token in ``X-Subscription-Token``.

    The token comes from this module's ``authorize_subscription`` (0.1 code may
    replace it with its own): with ``requester=`` when that function takes it,
    with the items alone when it has 0.1's signature, ``(items)``."""
    @wraps(method)
    def _subscription_in_response(self: SubscribeModelMixin, *args: Any, **kwargs: Any) -> Any:
        if self.requested_subscription():
            authorize = authorize_subscription  # looked up now: replaced, maybe
            items = self.get_subscription_items()
            if takes_keyword(authorize, "requester"):
                token = authorize(items, requester=self.get_subscription_requester())
            else:
                token = authorize(items)
            response = method(self, *args, **kwargs)
            response["X-Subscription-Token"] = token
            return response
        return method(self, *args, **kwargs)
    return _subscription_in_response


class ListSubscribeModelMixin(SubscribeModelMixin, mixins.ListModelMixin):
    """A ``list()`` that understands the ``X-Snorky`` header."""

    @subscription_in_response
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().list(request, *args, **kwargs)


class ListSubscribeAPIView(ListSubscribeModelMixin, generics.GenericAPIView):
    """GET: the list (with a subscription on request)."""

    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self.list(request, *args, **kwargs)


class ListSubscribeCreateAPIView(ListSubscribeModelMixin, mixins.CreateModelMixin,
                                 generics.GenericAPIView):
    """GET: the list (with a subscription on request); POST: create."""

    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self.list(request, *args, **kwargs)

    def post(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self.create(request, *args, **kwargs)

"""Dealers: route the deltas of one model to the subscription items that want them.

A dealer is a class with a ``name`` (what ``authorizeSubscription`` items
refer to; default: the class name) and a ``model`` (the delta ``model`` it
handles)::

    class PlayersByColor(SimpleDealer):
        name = "playersByColor"
        model = "Player"

        def get_key_for_model(self, data):
            return data["color"]

Three kinds are built in: :class:`BroadcastDealer` (every item),
:class:`SimpleDealer` (items whose query equals a key of the data) and
:class:`FilterDealer` (items whose query is a filter the data matches).
A custom dealer implements :meth:`Dealer.get_subscription_items_for_model`
and the add/remove pair; :meth:`Dealer.route_delta` turns a delta into the
``(item, delta)`` pairs it goes to, including the split of an update into
insert/update/delete per item.  A dealer returns data and sends nothing:
the service decides, per subscription, whether a pair is sent, buffered or
kept for a resumption.
"""
from __future__ import annotations

import abc
import functools
import itertools
import logging
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ... import wire
from ...logs import RateLimitedLogger
from ..retained import compact_key
from .deltas import deletion_delta, insertion_delta
from .filters import (
    InvalidFilter,
    Predicate,
    compile_filter,
    filter_matches,
    get_field,
    orderable_types,
)
from .subscriptions import Subscription, SubscriptionItem

__all__ = ["BadQuery", "Dealer", "BroadcastDealer", "SimpleDealer", "FilterDealer",
           # Snorky 0.1's filter functions, on the compiled filters of .filters
           "FilterAssociation", "get_field", "false_on_raise", "orderable_types", "filter_eq",
           "filter_lt", "filter_lte", "filter_gt", "filter_gte", "filter_not", "filter_and",
           "filter_or", "operator_functions", "filter_matches"]

log = logging.getLogger("snorky_sync.services.datasync")
_warn = RateLimitedLogger(log)
_json_key = wire.json_key


def _subscription_of(item: SubscriptionItem) -> Subscription:
    sub = item.subscription
    if sub is None:  # items reach dealers only through a Subscription
        raise RuntimeError(f"{item!r} belongs to no subscription")
    return sub


class BadQuery(ValueError):
    """A subscription query the dealer cannot serve; the text goes to the backend."""


class Dealer(abc.ABC):
    """Matches the data of one model with subscription items."""

    model: str
    """The delta ``model`` this dealer handles (set it as a class attribute)."""

    @property
    def name(self) -> str:
        """The name subscription items use; default: the class name."""
        return type(self).__name__

    def validate_query(self, query: Any) -> None:
        """Raise :exc:`BadQuery` if ``query`` can never be served.

        Called by ``authorizeSubscription`` before anything is registered.
        Default: every JSON value is a valid query.
        """

    @abc.abstractmethod
    def add_subscription_item(self, item: SubscriptionItem) -> None:
        """An item naming this dealer was authorized."""

    @abc.abstractmethod
    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        """An item naming this dealer was cancelled or expired."""

    @abc.abstractmethod
    def get_subscription_items_for_model(self, data: Any) -> Iterable[SubscriptionItem]:
        """The items that want a delta carrying ``data``.

        For an update it is called twice, with ``oldData`` and ``newData``.
        """

    def route_delta(self, delta: dict[Any, Any]) -> Iterator[tuple[SubscriptionItem, dict[Any, Any]]]:
        """Yield the ``(item, delta)`` pairs ``delta`` (validated, see
        :mod:`.deltas`) goes to; the service decides what each becomes (sent,
        buffered, kept for a resumption, dropped) and consumes them as they
        come, without keeping them.

        Insert and delete go to the items matching ``data``.  An update is
        split per item: matching old and new data -> the update; new only ->
        an insert of ``newData``; old only -> a delete of ``oldData``.  A
        subscription receives one delta per matching item.  Override it (or
        just :meth:`get_subscription_items_for_model`) to route otherwise;
        it may return any iterable of pairs, iterated once.
        """
        if delta["type"] != "update":
            # a copy of the matching items: the service may cancel one meanwhile
            yield from zip(list(self.get_subscription_items_for_model(delta["data"])),
                           itertools.repeat(delta))
            return
        old = dict.fromkeys(self.get_subscription_items_for_model(delta["oldData"]))
        new = dict.fromkeys(self.get_subscription_items_for_model(delta["newData"]))
        insertion = deletion = None
        for item in new:
            if item in old:
                yield item, delta
            else:
                if insertion is None:
                    insertion = insertion_delta(delta["model"], delta["newData"])
                yield item, insertion
        for item in old:
            if item not in new:
                if deletion is None:
                    deletion = deletion_delta(delta["model"], delta["oldData"])
                yield item, deletion

    def deliver_delta(self, delta: dict[Any, Any]) -> None:
        """Snorky 0.1's push path: hand each pair of :meth:`route_delta` to its
        item's subscription (``Subscription.deliver_delta``).

        The service routes with :meth:`route_delta`; it calls this method
        instead only for a dealer that overrides it (as 0.1 dealers did, to
        watch or reroute deltas), then dispatches what the override handed
        to the subscriptions of its own items.
        """
        for item, out in self.route_delta(delta):
            _subscription_of(item).deliver_delta(out)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} model={getattr(self, 'model', None)!r}>"


class BroadcastDealer(Dealer):
    """Every delta of the model goes to every item; the query is ignored."""

    def __init__(self) -> None:
        self.items: dict[SubscriptionItem, None] = {}  # ordered set

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        self.items[item] = None

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        del self.items[item]

    def get_subscription_items_for_model(self, data: Any) -> Iterable[SubscriptionItem]:
        return self.items


class SimpleDealer(Dealer):
    """Items whose query equals ``get_key_for_model(data)`` (compared as JSON values)."""

    def __init__(self) -> None:
        self.items_by_model_key: dict[Any, dict[SubscriptionItem, None]] = {}

    @abc.abstractmethod
    def get_key_for_model(self, data: Any) -> Any:
        """The key of a model's data, e.g. ``data["color"]``.

        Deltas go to the items whose query equals it.  If it raises (e.g. a
        field is missing) the delta matches no item and a warning is logged.
        """

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        # a right-sized copy: orjson's own output keeps KBs of slack (see services/retained.py)
        key = compact_key(_json_key(item.query))
        self.items_by_model_key.setdefault(key, {})[item] = None

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        key = _json_key(item.query)
        items = self.items_by_model_key[key]
        del items[item]
        if not items:
            del self.items_by_model_key[key]

    def get_subscription_items_for_model(self, data: Any) -> Iterable[SubscriptionItem]:
        try:
            key = _json_key(self.get_key_for_model(data))
        except Exception as exc:
            _warn.warning(f"key:{self.name}", "dealer %r: get_key_for_model failed (%s: %s); "
                          "the delta matches no item", self.name, type(exc).__name__, exc)
            return ()
        return self.items_by_model_key.get(key, ())


class FilterDealer(Dealer):
    """Items whose query is a filter (see :mod:`.filters`) the data matches."""

    def __init__(self) -> None:
        self.filters_by_item: dict[SubscriptionItem, Predicate] = {}

    def validate_query(self, query: Any) -> None:
        self._compile(query)

    @staticmethod
    def _compile(query: Any) -> Predicate:
        try:
            return compile_filter(query)
        except InvalidFilter as exc:
            raise BadQuery(f"Invalid filter: {exc}") from None

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        self.filters_by_item[item] = self._compile(item.query)

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        del self.filters_by_item[item]

    def get_subscription_items_for_model(self, data: Any) -> Iterable[SubscriptionItem]:
        return [item for item, matches in self.filters_by_item.items() if matches(data)]


# -- Snorky 0.1's filter functions -----------------------------------------------
# Each is one operator of the filter language (see .filters), evaluated by the
# same compiled predicates FilterDealer uses: (data, field, value) for the
# comparisons, (data, *filters) for and/or, (data, filter) for not.

FilterAssociation = namedtuple("FilterAssociation", ("filter", "subscription_item"))


def false_on_raise(function: Callable[..., bool]) -> Callable[..., bool]:
    """Decorator: the function answers False instead of raising KeyError or TypeError."""
    @functools.wraps(function)
    def wrapper(*args: Any) -> bool:
        try:
            return function(*args)
        except (KeyError, TypeError):
            return False
    return wrapper


def _operator(op: str, doc: str) -> Callable[..., bool]:
    def apply(data: Any, *args: Any) -> bool:
        return filter_matches(data, [op, *args])
    apply.__name__ = apply.__qualname__ = "filter_" + {
        "==": "eq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}.get(op, op)
    apply.__doc__ = doc
    return apply


filter_eq = _operator("==", "``data[field] == value`` (JSON equality).")
filter_lt = _operator("<", "``data[field] < value`` (numbers or strings).")
filter_lte = _operator("<=", "``data[field] <= value``.")
filter_gt = _operator(">", "``data[field] > value``.")
filter_gte = _operator(">=", "``data[field] >= value``.")
filter_not = _operator("not", "``data`` does not match the filter.")
filter_and = _operator("and", "``data`` matches every filter.")
filter_or = _operator("or", "``data`` matches some filter.")

operator_functions = {
    "==": filter_eq, "<": filter_lt, "<=": filter_lte, ">": filter_gt, ">=": filter_gte,
    "and": filter_and, "or": filter_or, "not": filter_not,
}

"""Dealers on their own: matching and the per-item split of updates (protocol.md §3)."""
import pytest

from snorky_sync.services.datasync import (
    BroadcastDealer, Dealer, FilterDealer, SimpleDealer, SubscriptionItem,
)
from snorky_sync.services.datasync.dealers import BadQuery


class Recorder:
    """Stands in for a Subscription: records what the dealer delivers."""

    def __init__(self):
        self.got = []

    def deliver_delta(self, delta):
        self.got.append(delta)


def item(query, dealer_name="d"):
    it = SubscriptionItem(dealer_name, query)
    it.subscription = Recorder()
    return it


class Everything(BroadcastDealer):
    model = "Player"


class ByColor(SimpleDealer):
    name = "byColor"
    model = "Player"

    def get_key_for_model(self, data):
        return data["color"]


class Young(FilterDealer):
    model = "Player"


def insert(data):
    return {"type": "insert", "model": "Player", "data": data}


def delete(data):
    return {"type": "delete", "model": "Player", "data": data}


def update(new, old):
    return {"type": "update", "model": "Player", "newData": new, "oldData": old}


def test_name_defaults_to_the_class_name():
    assert Everything().name == "Everything"
    assert ByColor().name == "byColor"
    assert Young().model == "Player"


def test_simple_dealer_needs_get_key_for_model():
    class NoKey(SimpleDealer):
        model = "X"
    with pytest.raises(TypeError):
        NoKey()


def test_dealer_base_is_abstract():
    with pytest.raises(TypeError):
        Dealer()


def test_broadcast_dealer_delivers_everything_to_every_item():
    d = Everything()
    a, b = item(None), item({"ignored": True})
    d.add_subscription_item(a)
    d.add_subscription_item(b)
    for delta in (insert({"x": 1}), delete({"x": 1}), update({"x": 2}, {"x": 1})):
        d.deliver_delta(delta)
    for it in (a, b):
        assert it.subscription.got == [insert({"x": 1}), delete({"x": 1}), update({"x": 2}, {"x": 1})]
    d.remove_subscription_item(a)
    d.deliver_delta(insert({"x": 3}))
    assert a.subscription.got[-1] == update({"x": 2}, {"x": 1})
    assert b.subscription.got[-1] == insert({"x": 3})
    d.remove_subscription_item(b)
    assert d.items == {}


def test_simple_dealer_routes_by_key_and_splits_updates():
    d = ByColor()
    red, blue = item("red"), item("blue")
    d.add_subscription_item(red)
    d.add_subscription_item(blue)
    d.deliver_delta(insert({"color": "red", "id": 1}))
    assert red.subscription.got == [insert({"color": "red", "id": 1})]
    assert blue.subscription.got == []
    red.subscription.got.clear()

    d.deliver_delta(update({"color": "red", "id": 2}, {"color": "red", "id": 1}))      # stays red
    assert red.subscription.got == [update({"color": "red", "id": 2}, {"color": "red", "id": 1})]
    assert blue.subscription.got == []
    red.subscription.got.clear()

    d.deliver_delta(update({"color": "blue", "id": 1}, {"color": "red", "id": 1}))     # red -> blue
    assert red.subscription.got == [delete({"color": "red", "id": 1})]
    assert blue.subscription.got == [insert({"color": "blue", "id": 1})]

    d.deliver_delta(update({"color": "green"}, {"color": "yellow"}))                    # nobody's
    assert len(red.subscription.got) == 1 and len(blue.subscription.got) == 1

    d.remove_subscription_item(red)
    d.remove_subscription_item(blue)
    assert d.items_by_model_key == {}


@pytest.mark.parametrize("query,key,matches", [
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
    ([1, "x"], [1, "x"], True),
    ([1, "x"], ["x", 1], False),
    (1, True, False),
    ("1", 1, False),
    (None, None, True),
])
def test_simple_dealer_compares_keys_as_json_values(query, key, matches):
    class ByKey(SimpleDealer):
        model = "M"

        def get_key_for_model(self, data):
            return data["k"]
    d = ByKey()
    it = item(query)
    d.add_subscription_item(it)
    d.deliver_delta({"type": "insert", "model": "M", "data": {"k": key}})
    assert bool(it.subscription.got) is matches


def test_simple_dealer_key_errors_match_nothing():
    d = ByColor()
    it = item("red")
    d.add_subscription_item(it)
    d.deliver_delta(insert({"no_color": 1}))
    d.deliver_delta(insert("not an object"))
    assert it.subscription.got == []
    d.deliver_delta(update({"color": "red"}, {"nocolor": 1}))   # old has no key: an insert
    assert it.subscription.got == [insert({"color": "red"})]


def test_filter_dealer_routes_and_splits_updates():
    d = Young()
    under21 = item(["<", "age", 21])
    blue = item(["==", "player.color", "blue"])
    for it in (under21, blue):
        d.add_subscription_item(it)
    d.deliver_delta(update({"age": 22}, {"age": 20}))       # leaves the filter
    d.deliver_delta(update({"age": 20}, {"age": 30}))       # enters it
    d.deliver_delta(update({"age": 19}, {"age": 18}))       # stays in
    d.deliver_delta(update({"age": 31}, {"age": 30}))       # never in
    d.deliver_delta(insert({"age": 3, "player": {"color": "blue"}}))
    d.deliver_delta(delete({"age": 40}))
    assert under21.subscription.got == [
        delete({"age": 20}),
        insert({"age": 20}),
        update({"age": 19}, {"age": 18}),
        insert({"age": 3, "player": {"color": "blue"}}),
    ]
    assert blue.subscription.got == [insert({"age": 3, "player": {"color": "blue"}})]
    d.remove_subscription_item(under21)
    d.remove_subscription_item(blue)
    assert d.filters_by_item == {}


def test_filter_dealer_validates_queries():
    d = Young()
    d.validate_query(["==", "a", 1])
    with pytest.raises(BadQuery, match="^Invalid filter: unknown operator 'like'$"):
        d.validate_query(["like", "a", 1])
    with pytest.raises(BadQuery, match="^Invalid filter: "):
        d.add_subscription_item(item("not a filter"))
    assert d.filters_by_item == {}


def test_other_dealers_accept_any_query():
    Everything().validate_query({"anything": [1]})
    ByColor().validate_query(["like", "a"])


def test_route_delta_returns_item_delta_pairs_and_touches_no_subscription():
    d = ByColor()
    red, blue = SubscriptionItem("byColor", "red"), SubscriptionItem("byColor", "blue")  # no subscription
    d.add_subscription_item(red)
    d.add_subscription_item(blue)
    assert list(d.route_delta(insert({"color": "red"}))) == [(red, insert({"color": "red"}))]
    stays = update({"color": "red", "id": 2}, {"color": "red", "id": 1})
    [(item, out)] = d.route_delta(stays)
    assert item is red and out is stays                       # the published delta itself
    moved = update({"color": "blue", "id": 1}, {"color": "red", "id": 1})
    assert list(d.route_delta(moved)) == [(blue, insert({"color": "blue", "id": 1})),
                                          (red, delete({"color": "red", "id": 1}))]
    assert list(d.route_delta(delete({"color": "green"}))) == []


def test_deliver_delta_hands_route_delta_pairs_to_the_subscriptions():
    class Rerouting(ByColor):            # a dealer routing otherwise, through the new method
        def route_delta(self, delta):
            return [(it, dict(out, rerouted=True)) for it, out in super().route_delta(delta)]
    d = Rerouting()
    red = item("red")
    d.add_subscription_item(red)
    d.deliver_delta(insert({"color": "red"}))                # 0.1's push path, on top of it
    assert red.subscription.got == [dict(insert({"color": "red"}), rerouted=True)]

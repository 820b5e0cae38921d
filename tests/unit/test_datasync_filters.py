"""The FilterDealer filter language (protocol.md §3): operators, paths, validation."""
import pytest

from snorky_sync.services.datasync.filters import (
    InvalidFilter, MAX_DEPTH, compile_filter, filter_matches, validate_filter,
)

PLAYER = {"name": "alice", "age": 20, "score": 7.5, "active": True, "tag": None,
          "player": {"color": "blue", "stats": {"hp": 3}}, "items": [1, 2]}


@pytest.mark.parametrize("f,expected", [
    (["==", "name", "alice"], True),
    (["==", "name", "bob"], False),
    (["==", "age", 20], True),
    (["==", "age", 20.0], True),
    (["==", "age", "20"], False),
    (["==", "active", True], True),
    (["==", "active", 1], False),          # JSON: true is not 1
    (["==", "age", True], False),
    (["==", "tag", None], True),
    (["==", "items", [1, 2]], True),
    (["==", "items", [2, 1]], False),
    (["==", "items", [True, 2]], False),
    (["==", "player", {"stats": {"hp": 3}, "color": "blue"}], True),
    (["==", "player", {"color": "blue"}], False),
    (["<", "age", 21], True),
    (["<", "age", 20], False),
    (["<=", "age", 20], True),
    (["<=", "age", 19], False),
    ([">", "age", 19], True),
    ([">", "age", 20], False),
    ([">=", "age", 20], True),
    ([">=", "age", 21], False),
    ([">", "score", 7], True),
    (["<", "name", "bob"], True),
    ([">", "name", "bob"], False),
    ([">=", "name", "alice"], True),
])
def test_comparisons(f, expected):
    assert filter_matches(PLAYER, f) is expected
    assert compile_filter(f)(PLAYER) is expected


@pytest.mark.parametrize("f,expected", [
    (["and", ["==", "name", "alice"], [">=", "age", 18]], True),
    (["and", ["==", "name", "alice"], [">=", "age", 21]], False),
    (["and", ["==", "name", "alice"], [">=", "age", 18], ["==", "tag", None]], True),
    (["or", ["==", "name", "bob"], [">=", "age", 18]], True),
    (["or", ["==", "name", "bob"], [">=", "age", 21]], False),
    (["not", ["==", "name", "bob"]], True),
    (["not", ["==", "name", "alice"]], False),
    (["or", ["not", ["==", "name", "alice"]], ["and", ["<", "age", 30], ["not", ["==", "active", False]]]], True),
    (["and"], True),
    (["or"], False),
])
def test_logical_operators_and_nesting(f, expected):
    assert filter_matches(PLAYER, f) is expected


def test_dotted_paths_nest_into_the_data():
    assert filter_matches(PLAYER, ["==", "player.color", "blue"])
    assert filter_matches(PLAYER, ["==", "player.stats.hp", 3])
    assert not filter_matches(PLAYER, ["==", "player.color", "red"])
    # Snorky 0.1 looked "player.color" up at the top level; we do not.
    assert not filter_matches({"player.color": "blue"}, ["==", "player.color", "blue"])
    assert not filter_matches({"player": {"color": "red"}, "color": "blue"}, ["==", "player.color", "blue"])


@pytest.mark.parametrize("f", [
    ["==", "missing", None],
    ["==", "missing", 1],
    ["<", "missing", 1],
    [">=", "missing", "a"],
    ["==", "player.missing", "blue"],
    ["==", "player.color.deeper", "blue"],   # path through a string
    ["==", "items.0", 1],                    # path through a list
    ["==", "name.length", 5],
])
def test_missing_fields_are_false_never_errors(f):
    assert filter_matches(PLAYER, f) is False


@pytest.mark.parametrize("data", [None, 5, "text", [1, 2], True])
def test_data_that_is_not_an_object_matches_no_comparison(data):
    assert filter_matches(data, ["==", "a", 1]) is False
    assert filter_matches(data, ["not", ["==", "a", 1]]) is True


def test_not_negates_a_missing_field_comparison():
    assert filter_matches({}, ["not", ["==", "color", "blue"]]) is True


@pytest.mark.parametrize("f", [
    ["<", "name", 5],         # string vs number
    [">", "age", "10"],       # number vs string
    ["<", "active", 2],       # boolean is not a number
    [">", "age", True],
    ["<", "tag", 1],          # null
    ["<", "items", [3]],      # lists are not ordered
    ["<", "player", {"a": 1}],
    [">=", "age", None],
    ["<=", "items", [1, 2]],
])
def test_unorderable_comparisons_are_false_never_errors(f):
    assert filter_matches(PLAYER, f) is False
    assert filter_matches(PLAYER, ["not", f]) is True


@pytest.mark.parametrize("f,fragment", [
    ("color", "non-empty list"),
    ({"==": ["a", 1]}, "non-empty list"),
    ([], "non-empty list"),
    (None, "non-empty list"),
    ([1, "a", 2], "operator must be a string"),
    (["like", "a", "b"], "unknown operator 'like'"),
    (["=", "a", "b"], "unknown operator '='"),
    (["==", "a"], "takes a field and a value"),
    (["==", "a", 1, 2], "takes a field and a value"),
    (["<"], "takes a field and a value"),
    (["==", 5, 1], "field must be a non-empty string"),
    (["==", "", 1], "field must be a non-empty string"),
    (["==", ["a"], 1], "field must be a non-empty string"),
    (["==", "a..b", 1], "empty path segment"),
    (["==", ".a", 1], "empty path segment"),
    (["not"], "'not' takes exactly one filter"),
    (["not", ["==", "a", 1], ["==", "b", 1]], "'not' takes exactly one filter"),
    (["not", "a"], "non-empty list"),
    (["and", ["==", "a", 1], ["~", "b", 2]], "unknown operator '~'"),
    (["or", ["==", "a", 1], "b"], "non-empty list"),
])
def test_malformed_filters_are_rejected_with_a_reason(f, fragment):
    with pytest.raises(InvalidFilter) as info:
        validate_filter(f)
    assert fragment in str(info.value)
    with pytest.raises(InvalidFilter):
        compile_filter(f)


def test_nesting_is_bounded():
    f = ["==", "a", 1]
    for _ in range(MAX_DEPTH):
        f = ["not", f]
    validate_filter(f)
    with pytest.raises(InvalidFilter, match="nested deeper"):
        validate_filter(["not", f])


def test_deep_values_compare_without_raising():
    deep = 1
    for _ in range(5000):
        deep = [deep]
    assert compile_filter(["==", "x", deep])({"x": deep}) is False  # too deep to compare: false, no error

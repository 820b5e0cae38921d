"""The one token bucket every limit uses (snorky_sync.endpoints.limits.TokenBucket):
messages and bytes per connection, new connections per process and per address."""
from snorky_sync.endpoints.limits import InputBudget, TokenBucket


def test_take_spends_into_debt_and_wait_says_until_when():
    b = TokenBucket(10, 5, now=0.0)
    assert b.take(5, now=0.0)
    assert not b.take(5, now=0.0)          # balance -5: over
    assert b.wait(now=0.0) == 0.5          # 5 tokens at 10/s
    assert b.wait(now=0.5) == 0.0


def test_available_spends_nothing():
    b = TokenBucket(2, 1, now=0.0)
    assert b.available(1, now=0.0) == 0.0
    assert b.available(1, now=0.0) == 0.0  # asking twice is still free
    assert b.take(1, now=0.0)
    assert b.available(1, now=0.0) == 0.5  # one token at 2/s
    assert b.available(1, now=0.25) == 0.25


def test_refill_stops_at_the_burst():
    b = TokenBucket(100, 3, now=0.0)
    assert b.refill(1000.0) == 3


def test_rate_zero_is_unlimited():
    b = TokenBucket(0, 0, now=0.0)
    assert all(b.take(10**9, now=0.0) for _ in range(3))
    assert b.available(10**9, now=0.0) == 0.0 and b.wait(now=0.0) == 0.0


def test_input_budget_closes_on_messages_and_throttles_on_bytes():
    budget = InputBudget(rate_limit=2, rate_burst=2, byte_rate=100, byte_burst=100, now=0.0)
    assert budget.charge(2, 300, now=0.0)      # messages within the burst; bytes 200 over
    assert budget.delay(now=0.0) == 2.0        # read again once the bytes are paid
    assert not budget.charge(1, 0, now=0.0)    # a third message at once: over the rate

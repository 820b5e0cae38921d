"""ConnectRate's buckets and Retry-After, on a clock the test moves."""
import pytest

from snorky_sync.endpoints import admission
from snorky_sync.endpoints.admission import ConnectRate, client_address


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(admission, "_monotonic", lambda: now[0])
    return now


def env(addr="10.0.0.1", xff=None):
    e = {"REMOTE_ADDR": addr}
    if xff:
        e["HTTP_X_FORWARDED_FOR"] = xff
    return e


def test_burst_then_rate(clock):
    rate = ConnectRate(rate=10, burst=5)
    assert [rate.admit(env()) for _ in range(5)] == [None] * 5
    retry = rate.admit(env())
    assert isinstance(retry, int) and retry >= 1
    clock[0] += 0.1  # one token back
    assert rate.admit(env()) is None
    assert rate.admit(env()) is not None


def test_retry_after_grows_with_the_crowd(clock):
    rate = ConnectRate(rate=100, burst=1)
    rate.admit(env())
    retries = [rate.admit(env()) for _ in range(5000)]
    assert min(retries) >= 1
    # 5,000 refused at 100/s: the suggested delays spread over ~50 s, not all at 1 s
    assert max(retries) > 20 and len(set(retries)) > 10


def test_per_address_buckets_and_trusted_proxies(clock):
    rate = ConnectRate(per_ip_rate=1, per_ip_burst=2, trusted_proxies=["127.0.0.1"])
    a = env("127.0.0.1", "10.0.0.1")
    assert [rate.admit(a) is None for _ in range(3)] == [True, True, False]
    assert rate.admit(env("127.0.0.1", "10.0.0.2")) is None
    clock[0] += 1.0
    assert rate.admit(a) is None


def test_client_address():
    assert client_address(env("10.0.0.9", "1.2.3.4")) == "10.0.0.9"  # not a trusted proxy
    trusted = ["10.0.0.9", "10.0.0.8"]
    assert client_address(env("10.0.0.9", "1.2.3.4, 10.0.0.8"), trusted) == "1.2.3.4"
    assert client_address(env("10.0.0.9"), trusted) == "10.0.0.9"


def test_off_by_default():
    assert not ConnectRate().enabled
    assert all(ConnectRate().admit(env()) is None for _ in range(10000))


def test_address_table_is_bounded(clock, monkeypatch):
    monkeypatch.setattr(admission, "_MAX_ADDRESSES", 100)
    rate = ConnectRate(per_ip_rate=1, per_ip_burst=5)
    for i in range(1000):
        rate.admit(env(f"10.1.{i // 256}.{i % 256}"))
    assert len(rate.addresses) <= 100

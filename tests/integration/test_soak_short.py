"""The soak test, short: churn + publish for a few seconds; nothing lost, no descriptors leaked."""
from bench.soak import soak


def test_short_soak_loses_nothing_and_leaks_no_descriptors():
    r = soak(6.0, clients=30)
    assert r["rounds"] > 3 and r["churned"] > 9
    assert r["lost"] == 0
    # after every client left, the server holds no more descriptors than before they came
    assert r["end"]["fds"] <= r["start"]["fds"] - 30, r
    assert r["end"]["rss_kb"] < r["start"]["rss_kb"] + 50 * 1024, r

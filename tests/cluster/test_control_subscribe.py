"""control.subscribe / unsubscribe / channels across gunicorn workers (issue
#24 item 2): two gunicorn workers on a real redis-server, identity ``u42``
with pages on both.  ``subscribe`` posted to ``/backend`` answers once both
workers subscribed their pages (``processes: 2``), each page is told and
receives the next publish; ``unsubscribe`` stops it; a personal channel of
other identities is refused on both workers; ``channels`` answers the same
list, with counts summed over the workers, whichever worker is asked.

The app: tests/cluster/control_app.py (conftest's ``control_cluster``).

Absence is proven by a marker: a later publish, through the same worker, on a
channel every page hears arrives first.
"""
from __future__ import annotations


def test_subscribe_unsubscribe_and_channels_on_both_workers(control_cluster):
    cluster = control_cluster()
    pages = cluster.spread("u42", 2)  # u42's pages, on both workers
    u42 = [c for group in pages.values() for c in group]
    bystanders = [c for group in cluster.spread("u7", 1).values() for c in group]
    everyone = u42 + bystanders
    for c in everyone:
        c.ok("pubsub", "subscribe", {"channel": "marker"})

    def publish(*pairs):
        """Publish each (channel, message) in order, all through one worker
        (one keep-alive connection): pages then receive them in that order."""
        cluster.batch([("pubsub_backend", "publish", {"channel": channel, "message": message})
                       for channel, message in pairs])

    # subscribe: answered once both workers subscribed their pages
    assert cluster.control("subscribe", identity="u42", service="pubsub", channel="alerts") == {
        "subscribed": len(u42), "refused": 0, "processes": 2}
    for c in u42:
        assert c.next_notification()["message"] == {"type": "subscribed", "channel": "alerts"}
    publish(("alerts", "a1"), ("marker", "m1"))
    for c in u42:
        assert c.next_message() == "a1" and c.next_message() == "m1"
    for c in bystanders:
        assert c.next_message() == "m1"  # nothing of alerts before the marker

    # channels: the same answer from either worker
    first, second = (cluster.control("channels", worker=pid, service="pubsub") for pid in cluster.pids)
    assert first == second == {"channels": [{"channel": "alerts", "subscribers": len(u42)},
                                            {"channel": "marker", "subscribers": len(everyone)}]}

    # unsubscribe: each page told, and nothing more of the channel
    assert cluster.control("unsubscribe", identity="u42", service="pubsub", channel="alerts") == {
        "unsubscribed": len(u42), "processes": 2}
    for c in u42:
        assert c.next_notification()["message"] == {"type": "unsubscribed", "channel": "alerts"}
    publish(("alerts", "a2"), ("marker", "m2"))
    for c in everyone:
        assert c.next_message() == "m2"

    # a personal channel of other identities: refused on both workers, nothing received
    assert cluster.control("subscribe", identity="u42", service="pubsub", channel="dialog#alice,bob") == {
        "subscribed": 0, "refused": len(u42), "processes": 2}
    publish(("dialog#alice,bob", "secret"), ("marker", "m3"))
    for c in everyone:
        assert c.next_message() == "m3"
    assert cluster.control("channels", service="pubsub") == {
        "channels": [{"channel": "marker", "subscribers": len(everyone)}]}

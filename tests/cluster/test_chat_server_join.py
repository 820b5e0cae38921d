"""Chat's server-side joins across gunicorn workers (issue #24 item 2): two
gunicorn workers on a real redis-server, identity ``u42`` with pages on both,
``bob`` with pages on both.  ``control.subscribe({service: "chat"})`` posted
to ``/backend`` answers once both workers joined u42's pages (``processes:
2``); each page is told ``subscribed`` with the members, bob's pages see u42
``joined`` once (one identity, however many connections and workers), and
u42's pages receive what bob sends next; ``channels`` answers the same counts
from either worker; ``unsubscribe`` tells each page, bob's pages see ``left``
once, and nothing more of the room reaches u42; a personal channel of other
identities is refused on both workers.

Absence is proven by a marker: a later message bob sends, through the same
connection, into a room everyone joined arrives first.

The app: tests/cluster/control_app.py (conftest's ``control_cluster``).
"""
from __future__ import annotations


def chat_until(client, body):
    """The chat notifications ``client`` receives before the message ``body`` (a marker)."""
    got = []
    while True:
        message = client.next_notification()["message"]
        if message.get("type") == "message" and message.get("body") == body:
            return got
        got.append(message)


def presence_of(messages, channel):
    return [(m["from"], m["status"]) for m in messages
            if m.get("type") == "presence" and m.get("channel") == channel]


def test_chat_server_join_and_leave_on_both_workers(control_cluster):
    cluster = control_cluster()
    pages = cluster.spread("u42", 2)  # u42's pages, on both workers
    u42 = [c for group in pages.values() for c in group]
    bobs = [c for group in cluster.spread("bob", 1).values() for c in group]
    everyone = u42 + bobs
    for c in everyone:  # everyone in the marker room; bob in the room
        c.ok("chat", "join", {"channel": "marker"})
    for c in bobs:
        c.ok("chat", "join", {"channel": "room"})
    sender = bobs[0]
    sender.ok("chat", "send", {"channel": "marker", "body": "m0"})
    for c in everyone:
        chat_until(c, "m0")  # the joins' presence, everywhere

    # subscribe: answered once both workers joined u42's pages
    assert cluster.control("subscribe", identity="u42", service="chat", channel="room") == {
        "subscribed": len(u42), "refused": 0, "processes": 2}
    for c in u42:
        told = c.next_notification()["message"]
        assert (told["type"], told["channel"], sorted(told["members"])) == (
            "subscribed", "room", ["bob", "u42"])
    sender.ok("chat", "send", {"channel": "room", "body": "hi"})
    sender.ok("chat", "send", {"channel": "marker", "body": "m1"})
    for c in u42:
        assert [(m["type"], m.get("body")) for m in chat_until(c, "m1")] == [("message", "hi")]
    for c in bobs:
        before = chat_until(c, "m1")
        assert presence_of(before, "room") == [("u42", "joined")]  # once, for both workers' pages
        assert [m["body"] for m in before if m["type"] == "message"] == ["hi"]

    # channels: the same answer from either worker, counts summed
    first, second = (cluster.control("channels", worker=pid, service="chat") for pid in cluster.pids)
    assert first == second == {"channels": [
        {"channel": "marker", "subscribers": len(everyone)},
        {"channel": "room", "subscribers": len(u42) + len(bobs)}]}

    # unsubscribe: each page told, bob's pages see 'left' once, nothing more reaches u42
    assert cluster.control("unsubscribe", identity="u42", service="chat", channel="room") == {
        "unsubscribed": len(u42), "processes": 2}
    for c in u42:
        assert c.next_notification()["message"] == {"type": "unsubscribed", "channel": "room"}
    sender.ok("chat", "send", {"channel": "room", "body": "gone"})
    sender.ok("chat", "send", {"channel": "marker", "body": "m2"})
    for c in u42:
        assert chat_until(c, "m2") == []
    for c in bobs:
        assert presence_of(chat_until(c, "m2"), "room") == [("u42", "left")]

    # a personal channel of other identities: refused on both workers
    assert cluster.control("subscribe", identity="u42", service="chat", channel="dm#alice,bob") == {
        "subscribed": 0, "refused": len(u42), "processes": 2}
    sender.ok("chat", "send", {"channel": "marker", "body": "m3"})
    for c in u42:
        assert chat_until(c, "m3") == []
    assert cluster.control("channels", service="chat") == {"channels": [
        {"channel": "marker", "subscribers": len(everyone)},
        {"channel": "room", "subscribers": len(bobs)}]}

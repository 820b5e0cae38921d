"""Chat, Cursors and Messaging over real WebSockets with token identities, under every server kind."""
from snorky_sync.auth import ConnectionTokens
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

SECRET = "integration-token-secret-0123456789"


def as_user(server, identity):
    return SnorkyTestClient(f"{server.ws_url}/ws-token?token={ConnectionTokens(SECRET).create(identity)}")


def no_ts(msg):
    return {k: v for k, v in msg.items() if k != "timestamp"}


def test_chat_two_users_two_tabs(server):
    alice1, bob = as_user(server, "alice"), as_user(server, {"id": 2})
    try:
        assert alice1.ok("chat", "join", {"channel": "lobby"}) == {"members": ["alice"]}
        members = bob.ok("chat", "join", {"channel": "lobby"})["members"]
        assert sorted(map(str, members)) == sorted(["alice", str({"id": 2})])
        assert no_ts(alice1.next_notification()["message"]) == {
            "type": "presence", "from": {"id": 2}, "channel": "lobby", "status": "joined"}
        alice2 = as_user(server, "alice")
        alice2.ok("chat", "join", {"channel": "lobby"})  # same identity: no presence
        bob.send("chat", {"command": "send", "params": {"channel": "lobby", "body": "hi"}, "callId": 5})
        assert no_ts(bob.recv()["message"]) == {"type": "message", "from": {"id": 2}, "channel": "lobby", "body": "hi"}
        assert bob.recv()["message"] == {"type": "response", "callId": 5, "data": None}
        for c in (alice1, alice2):
            assert no_ts(c.next_notification()["message"])["body"] == "hi"
        alice2.ok("chat", "read", {"channel": "lobby"})
        assert no_ts(alice1.next_notification()["message"]) == {"type": "read", "channel": "lobby"}
        alice1.close()
        bob.expect_silence(0.3)  # alice still has a tab
        alice2.close()
        assert no_ts(bob.next_notification()["message"]) == {
            "type": "presence", "from": "alice", "channel": "lobby", "status": "left"}
    finally:
        bob.close()


def test_chat_needs_an_identity(connect):
    assert connect().call("chat", "join", {"channel": "x"})["message"] == "Not authenticated"


def test_cursors_between_users(server):
    a, b = as_user(server, "ann"), as_user(server, "ben")
    try:
        a.ok("cursors", "join", {"document": "doc1"})
        handle = a.ok("cursors", "createCursor", {"privateHandle": 0, "document": "doc1", "position": 3, "status": "x"})
        assert b.ok("cursors", "join", {"document": "doc1"}) == {"cursors": [
            {"publicHandle": handle, "document": "doc1", "position": 3, "status": "x", "owner": "ann"}]}
        a.ok("cursors", "updateCursor", {"privateHandle": 0, "newData": {"position": 4}})
        assert b.next_notification()["message"]["cursor"]["position"] == 4
        b.close()
        a.ok("cursors", "removeCursor", {"privateHandle": 0})
        a.expect_silence(0.3)
    finally:
        a.close()


def test_messaging_between_connections(connect):
    a, b = connect(), connect()
    a.ok("messaging", "registerParticipant", {"name": "a"})
    b.ok("messaging", "registerParticipant", {"name": "b"})
    assert a.ok("messaging", "listParticipants") == ["a", "b"]
    a.ok("messaging", "send", {"sender": "a", "dest": "b", "body": [1, 2]})
    assert b.next_notification()["message"] == {"type": "message", "sender": "a", "dest": "b", "body": [1, 2]}
    assert b.call("messaging", "send", {"sender": "a", "dest": "b", "body": 1})["message"] == "Invalid sender"
    b.close()
    # the disconnect unregisters "b"
    wait_for(lambda: a.ok("messaging", "listParticipants") == ["a"], 10, "b unregistered")
    assert a.call("messaging", "send", {"sender": "a", "dest": "b", "body": 1})["message"] == "Unknown destination"

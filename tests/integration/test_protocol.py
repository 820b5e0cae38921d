"""protocol.md §1, §2 and PubSub over real WebSockets, under every server kind."""
import json
import socket

import pytest
import websocket

from support.waiting import wait_for

SERVER_ENV = {"SNORKY_MAX_QUEUE_BYTES": str(1024 * 1024), "SNORKY_MAX_FRAME_SIZE": str(64 * 1024),
              "SNORKY_RATE_LIMIT": "0"}  # the slow-consumer test publishes as fast as it can


def test_pubsub_end_to_end(connect):
    a, b = connect(), connect()
    assert a.call("pubsub", "subscribe", {"channel": "news"}, call_id=1) == {
        "type": "response", "callId": 1, "data": None}
    b.ok("pubsub", "subscribe", {"channel": "news"})
    a.send("pubsub", {"command": "publish", "params": {"channel": "news", "message": {"x": [1, "é"]}}, "callId": 2})
    # the publisher's own notification arrives before its response
    assert a.recv() == {"service": "pubsub", "message": {"type": "message", "channel": "news", "message": {"x": [1, "é"]}}}
    assert a.recv() == {"service": "pubsub", "message": {"type": "response", "callId": 2, "data": None}}
    assert b.recv() == {"service": "pubsub", "message": {"type": "message", "channel": "news", "message": {"x": [1, "é"]}}}
    assert a.call("pubsub", "subscribe", {"channel": "news"}) ["message"] == "Already subscribed"
    assert a.call("pubsub", "unsubscribe", {"channel": "other"})["message"] == "Not subscribed"
    b.ok("pubsub", "unsubscribe", {"channel": "news"})
    b.ok("pubsub", "subscribe", {"channel": "marker"})
    a.ok("pubsub", "publish", {"channel": "news", "message": 1})
    a.ok("pubsub", "publish", {"channel": "marker", "message": "after"})   # published after 1, by the same client
    assert b.nothing_before(lambda m: m.get("channel") == "marker")["message"] == "after"


def test_object_channels_over_the_wire(connect):
    a, b = connect(), connect()
    a.ok("pubsub", "subscribe", {"channel": {"room": 7, "kind": "chat"}})
    b.ok("pubsub", "publish", {"channel": {"kind": "chat", "room": 7}, "message": "hi"})
    assert a.recv()["message"] == {"type": "message", "channel": {"kind": "chat", "room": 7}, "message": "hi"}


@pytest.mark.parametrize("call_id", [0, "s", {"o": [1]}, 1.5, False, []])
def test_call_id_echoed_verbatim(connect, call_id):
    c = connect()
    assert c.call("calc", "add", {"a": 1, "b": 2}, call_id=call_id) == {
        "type": "response", "callId": call_id, "data": 3}


def test_no_call_id_means_no_call_id_key_in_response_but_null_in_error(connect):
    c = connect()
    c.send("calc", {"command": "add", "params": {"a": 1}})
    assert c.recv()["message"] == {"type": "response", "data": 1}
    c.send("calc", {"command": "add", "params": {"a": 1}, "callId": None})
    assert c.recv()["message"] == {"type": "response", "data": 1}
    c.send("calc", {"command": "nope", "params": {}})
    assert c.recv()["message"] == {"type": "error", "callId": None, "message": "Unknown command"}


def test_error_texts(connect):
    c = connect()
    assert c.call("calc", "nope", {})["message"] == "Unknown command"
    assert c.call("calc", 12, {})["message"] == "Unknown command"
    assert c.call("calc", "add", [1, 2])["message"] == "Invalid params"
    assert c.call("calc", "add", {"b": 2})["message"] == "Invalid params"
    assert c.call("calc", "add", {"a": 1, "c": 2})["message"] == "Invalid params"
    assert c.call("calc", "nope", "x")["message"] == "Unknown command"
    assert c.call("calc", "divide", {"a": 1, "b": 0})["message"] == "Division by zero"
    assert c.call("calc", "add", {"a": 1, "b": "x"})["message"] == "Internal error"
    assert c.call("calc", "add", {"a": 2})["data"] == 2  # default parameter


def test_falsy_results_and_wire_names(connect):
    c = connect()
    assert c.call("calc", "add", {"a": 0})["data"] == 0
    assert c.call("calc", "add", {"a": "", "b": ""})["data"] == ""
    assert c.call("calc", "add", {"a": [], "b": []})["data"] == []
    assert c.call("calc", "slowSquare", {"x": 3, "delay": 0})["data"] == 9
    assert c.call("calc", "slow_square", {"x": 3})["message"] == "Unknown command"


def test_async_replies_come_later_and_the_connection_keeps_serving(connect):
    c = connect()
    c.send("calc", {"command": "slowSquare", "params": {"x": 4, "delay": 0.5}, "callId": "slow"})
    c.send("calc", {"command": "add", "params": {"a": 1}, "callId": "fast"})
    first, second = c.recv()["message"], c.recv()["message"]
    assert first == {"type": "response", "callId": "fast", "data": 1}
    assert second == {"type": "response", "callId": "slow", "data": 16}


def test_sync_replies_keep_request_order(connect):
    c = connect()
    for i in range(200):
        c.send("calc", {"command": "add", "params": {"a": i}, "callId": i})
    assert [c.recv()["message"]["callId"] for _ in range(200)] == list(range(200))


def test_missing_command_or_params_gets_no_reply(connect):
    c = connect()
    c.send("calc", {"params": {}, "callId": 1})
    c.send("calc", {"command": "add", "callId": 2})
    c.send("calc", "just a string")
    assert c.answers_next("calc", "add", {"a": 5})["data"] == 5   # no reply to any of the three came first


BAD_FRAMES = ["not json", "[1,2]", '"text"', "null", "42", "{}", '{"service": "calc"}',
              '{"message": {}}', '{"service": "CALC", "message": {"command": "add", "params": {"a": 1}}}',
              '{"service": "nope", "message": 1}', '{"service": 5, "message": 1}']


def test_garbage_frames_are_dropped_silently_and_harm_nobody(connect, server):
    bad, other = connect(), connect()
    other.ok("pubsub", "subscribe", {"channel": "g"})
    for frame in BAD_FRAMES:
        bad.send_raw(frame)
    bad.send_raw(b"\xff\xfe\x00garbage", binary=True)
    # still connected, still served, and nothing answered the garbage first
    assert bad.answers_next("calc", "add", {"a": 1})["data"] == 1
    bad.ok("pubsub", "publish", {"channel": "g", "message": "after garbage"})
    assert other.recv()["message"]["message"] == "after garbage"
    assert "invalid JSON" in server.log()


def test_binary_frame_with_json_is_processed(connect):
    c = connect()
    c.send_raw(json.dumps({"service": "calc", "message": {"command": "add", "params": {"a": 2}, "callId": 1}}).encode(),
               binary=True)
    msg = c.ws.recv_data()
    assert msg[0] == websocket.ABNF.OPCODE_TEXT  # server frames are always text
    assert json.loads(msg[1])["message"]["data"] == 2


def test_fragmented_message_is_reassembled(connect):
    c = connect()
    text = json.dumps({"service": "echo", "message": "x" * 3000})
    c.ws.send_frame(websocket.ABNF.create_frame(text[:1000], websocket.ABNF.OPCODE_TEXT, fin=0))
    c.ws.send_frame(websocket.ABNF.create_frame(text[1000:2000], websocket.ABNF.OPCODE_CONT, fin=0))
    c.ws.send_frame(websocket.ABNF.create_frame(text[2000:], websocket.ABNF.OPCODE_CONT, fin=1))
    assert c.recv() == {"service": "echo", "message": "x" * 3000}


def test_large_messages_both_ways(connect):
    c = connect()
    for size in (125, 126, 65535 - 40, 60000):
        c.send("echo", "y" * size)
        assert c.recv()["message"] == "y" * size


def test_frame_over_the_limit_closes_with_1009_and_harms_nobody(connect):
    big, other = connect(), connect()
    big.send("echo", "z" * (70 * 1024))
    big.ws.settimeout(10)
    opcode, data = big.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1009
    assert other.call("calc", "add", {"a": 1})["data"] == 1


def test_disconnect_cleans_up_subscriptions(connect, server):
    watcher = connect()
    base = watcher.ok("inspect", "state")
    clients = [connect() for _ in range(5)]
    for i, c in enumerate(clients):
        c.ok("pubsub", "subscribe", {"channel": f"cleanup-{i}"})
        c.ok("pubsub", "subscribe", {"channel": "cleanup-shared"})
    assert watcher.ok("inspect", "state")["subscriptions"] == base["subscriptions"] + 5
    for c in clients:
        c.close()
    wait_for(lambda: watcher.ok("inspect", "state")["subscriptions"] == base["subscriptions"])
    assert watcher.ok("inspect", "state")["subscribers"] == base["subscribers"]


def test_abrupt_disconnect_cleans_up(connect):
    watcher = connect()
    base = watcher.ok("inspect", "state")["subscriptions"]
    c = connect()
    c.ok("pubsub", "subscribe", {"channel": "abrupt"})
    c.ws.sock.shutdown(socket.SHUT_RDWR)  # no close frame
    c.ws.sock.close()
    wait_for(lambda: watcher.ok("inspect", "state")["subscriptions"] == base)


def test_slow_consumer_is_cut_off_and_others_get_everything(connect, server):
    healthy, slow = connect(), connect()
    # several publishers: each connection's input is held to SNORKY_BYTE_RATE_LIMIT (256 KiB/s)
    publishers = [connect() for _ in range(10)]
    publisher = publishers[0]
    for c in (healthy, slow):
        c.ok("pubsub", "subscribe", {"channel": "firehose"})
    payload = "p" * 8000
    n = 2500  # 20 MB: far more than loopback socket buffers + the 1 MB queue
    received = 0
    for i in range(n):
        publishers[i % len(publishers)].send(
            "pubsub", {"command": "publish", "params": {"channel": "firehose", "message": payload}})
        if i % 50 == 49:  # the healthy client keeps reading as the publisher goes
            while received < i - 10:
                assert healthy.recv()["message"]["type"] == "message"
                received += 1
    while received < n:
        assert healthy.recv()["message"]["type"] == "message"
        received += 1
    # the slow client was disconnected: reading what it has ends in a closed connection
    slow.ws.settimeout(20)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        while True:
            if slow.ws.recv() == "":
                raise websocket.WebSocketConnectionClosedException("closed")
    assert "slow consumer" in server.log()
    assert publisher.ok("inspect", "state")["counters"]["slow_consumer_disconnects"] >= 1


def test_permessage_deflate_is_not_negotiated(server):
    ws = websocket.create_connection(
        server.ws_url + "/ws", timeout=10,
        header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"])
    try:
        assert "sec-websocket-extensions" not in {k.lower() for k in ws.getheaders()}
        ws.send(json.dumps({"service": "calc", "message": {"command": "add", "params": {"a": 1}, "callId": 1}}))
        assert json.loads(ws.recv())["message"]["data"] == 1
    finally:
        ws.close()


def test_cross_origin_accepted_by_default(server):
    ws = websocket.create_connection(server.ws_url + "/ws", timeout=10, origin="http://elsewhere.example")
    ws.send(json.dumps({"service": "calc", "message": {"command": "add", "params": {"a": 1}, "callId": 1}}))
    assert json.loads(ws.recv())["message"]["data"] == 1
    ws.close()


def test_clean_close_handshake(connect):
    c = connect()
    c.ok("calc", "add", {"a": 1})
    c.ws.send_close(1000, b"bye")
    opcode, data = c.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1000


def test_many_clients_each_get_every_message(connect):
    clients = [connect() for _ in range(30)]
    for c in clients:
        c.ok("pubsub", "subscribe", {"channel": "many"})
    pub = connect()
    for i in range(100):
        pub.send("pubsub", {"command": "publish", "params": {"channel": "many", "message": i}})
    for c in clients:
        assert [c.recv()["message"]["message"] for _ in range(100)] == list(range(100))

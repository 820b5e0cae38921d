"""DataSync end to end: backend HTTP authorizes and publishes, browsers acquire over WebSocket."""


def authorize(server, items):
    r = server.post_backend("datasync_backend", {"command": "authorizeSubscription", "params": {"items": items}, "callId": 1})
    assert r.status_code == 200
    return r.json()["message"]


def publish(server, deltas):
    r = server.post_backend("datasync_backend", {"command": "publishDeltas", "params": {"deltas": deltas}, "callId": 2})
    assert r.status_code == 200
    return r.json()["message"]


def todo(i, lst="a", done=False):
    return {"id": i, "list": lst, "done": done, "owner": {"name": "ann"}}


def test_deltas_between_authorization_and_acquisition_arrive_in_order_before_the_reply(server, connect):
    token = authorize(server, [{"dealer": "todosByList", "query": "a"}])["data"]
    assert len(token) == 32 and token.isalnum() and token == token.lower()
    # the web app queries its database now; meanwhile changes happen:
    assert publish(server, [{"type": "insert", "model": "Todo", "data": todo(1)},
                            {"type": "update", "model": "Todo", "newData": todo(1, done=True), "oldData": todo(1)},
                            {"type": "insert", "model": "Todo", "data": todo(2, lst="b")}])["type"] == "response"
    c = connect()
    c.send("datasync", {"command": "acquireSubscription", "params": {"token": token}, "callId": 5})
    assert c.recv()["message"] == {"type": "delta", "delta": {"type": "insert", "model": "Todo", "data": todo(1)}}
    assert c.recv()["message"] == {"type": "delta", "delta": {
        "type": "update", "model": "Todo", "newData": todo(1, done=True), "oldData": todo(1)}}
    assert c.recv()["message"] == {"type": "response", "callId": 5, "data": None}
    # live deltas after acquisition; an update moving the item out of the list is a delete
    publish(server, [{"type": "update", "model": "Todo", "newData": todo(1, lst="b"), "oldData": todo(1, done=True)}])
    assert c.recv()["message"] == {"type": "delta", "delta": {"type": "delete", "model": "Todo", "data": todo(1, done=True)}}
    assert c.call("datasync", "acquireSubscription", {"token": token})["type"] == "error"
    c.ok("datasync", "cancelSubscription", {"token": token})
    c.ok("datasync", "acquireSubscription", {"token": authorize(server, [{"dealer": "todosByList", "query": "m"}])["data"]})
    publish(server, [{"type": "insert", "model": "Todo", "data": todo(3)},
                     {"type": "insert", "model": "Todo", "data": todo(4, lst="m")}])   # the marker, after it
    assert c.nothing_before(lambda m: m.get("type") == "delta")["delta"]["data"] == todo(4, lst="m")


def test_filter_dealer_with_dotted_paths_and_update_routing(server, connect):
    token = authorize(server, [{"dealer": "todosFilter", "query": ["and", ["==", "owner.name", "ann"], ["==", "done", False]]}])["data"]
    c = connect()
    c.ok("datasync", "acquireSubscription", {"token": token})
    publish(server, [{"type": "insert", "model": "Todo", "data": todo(1)}])
    assert c.recv()["message"]["delta"]["type"] == "insert"
    publish(server, [{"type": "update", "model": "Todo", "newData": todo(1, done=True), "oldData": todo(1)}])
    assert c.recv()["message"]["delta"] == {"type": "delete", "model": "Todo", "data": todo(1)}
    publish(server, [{"type": "update", "model": "Todo", "newData": todo(1), "oldData": todo(1, done=True)}])
    assert c.recv()["message"]["delta"] == {"type": "insert", "model": "Todo", "data": todo(1)}


def test_error_texts_over_http_and_websocket(server, connect):
    assert authorize(server, [{"dealer": "nope", "query": 1}])["message"] == "No such dealer"
    assert authorize(server, [{"dealer": 5, "query": 1}])["message"] == "dealer should be a dealer name"
    assert authorize(server, [{"query": 1}])["message"] == "Missing field 'dealer'"
    assert authorize(server, [{"dealer": "allTodos"}])["message"] == "Missing field 'query'"
    bad = authorize(server, [{"dealer": "todosFilter", "query": ["like", "x", 1]}])
    assert bad["type"] == "error" and bad["message"].startswith("Invalid filter")
    assert publish(server, [{"type": "upsert", "model": "Todo", "data": {}}])["message"] == "Invalid delta type"
    assert publish(server, [{"type": "insert", "model": 5, "data": {}}])["message"] == "model must be string"
    assert publish(server, [{"type": "insert", "model": "Todo"}])["message"] == "Missing field"
    assert publish(server, [{"type": "insert", "model": "Unknown", "data": {}}])["type"] == "response"
    c = connect()
    assert c.call("datasync", "acquireSubscription", {"token": 5})["message"] == "token must be string"
    assert c.call("datasync", "acquireSubscription", {"token": "x" * 32})["message"] == "No such subscription"
    assert c.call("datasync", "cancelSubscription", {"token": "x" * 32})["message"] == "No such subscription"


def test_subscription_of_another_connection_cannot_be_cancelled(server, connect):
    token = authorize(server, [{"dealer": "allTodos", "query": None}])["data"]
    owner, thief = connect(), connect()
    owner.ok("datasync", "acquireSubscription", {"token": token})
    assert thief.call("datasync", "cancelSubscription", {"token": token})["message"] == "No such subscription"
    thief.ok("datasync", "acquireSubscription",
             {"token": authorize(server, [{"dealer": "todosByList", "query": "m"}])["data"]})
    publish(server, [{"type": "insert", "model": "Todo", "data": todo(9)},
                     {"type": "insert", "model": "Todo", "data": todo(10, lst="m")}])   # the marker, after it
    assert owner.recv()["message"]["delta"]["data"] == todo(9)
    assert thief.nothing_before(lambda m: m.get("type") == "delta")["delta"]["data"] == todo(10, lst="m")

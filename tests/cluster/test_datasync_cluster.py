"""DataSync across processes: authorize on one, publish on another, acquire on any."""
from support.datasync_flow import acquire_while_publishing
from support.servers import wait_metric

ENV = {"SNORKY_DATASYNC_DEALERS": "tests.support.dealers:TODO_DEALERS", "SNORKY_DATASYNC_TIMEOUT": "2"}


def backend(srv, command, **params):
    r = srv.post_backend("datasync_backend", {"command": command, "params": params, "callId": 1})
    assert r.status_code == 200, r.text
    return r.json()["message"]


def todo(i, lst="a"):
    return {"id": i, "list": lst}


def test_authorize_on_a_publish_on_b_acquire_on_b_and_on_a(cluster, connect):
    a, b = cluster(2, **ENV)
    t1 = backend(a, "authorizeSubscription", items=[{"dealer": "todosByList", "query": "a"}])["data"]
    t2 = backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
    for i in range(5):  # published on B between authorization and acquisition
        assert backend(b, "publishDeltas", deltas=[{"type": "insert", "model": "Todo", "data": todo(i)}])["type"] == "response"
    cb, ca = connect(b), connect(a)
    epochs = []
    for c, token in ((cb, t1), (ca, t2)):
        c.send("datasync", {"command": "acquireSubscription", "params": {"token": token}, "callId": 7})
        got = [c.recv()["message"] for _ in range(6)]
        # the default app's subscriptions are resumable (SNORKY_DATASYNC_RESUME_WINDOW): deltas
        # carry seq and the epoch it counts in
        assert [{k: v for k, v in m.items() if k not in ("seq", "epoch")} for m in got[:5]] == [
            {"type": "delta", "delta": {"type": "insert", "model": "Todo", "data": todo(i)}} for i in range(5)]
        seqs = [m["seq"] for m in got[:5]]
        assert seqs == sorted(set(seqs))
        (epoch,) = {m["epoch"] for m in got[:5]}
        epochs.append(epoch)
        assert got[5] == {"type": "response", "callId": 7, "data": None}
    assert epochs[0] != epochs[1]  # each process counts its own seq
    # live deltas published on either process reach both subscribers, once, in order
    backend(a, "publishDeltas", deltas=[{"type": "insert", "model": "Todo", "data": todo(10)}])
    backend(b, "publishDeltas", deltas=[{"type": "delete", "model": "Todo", "data": todo(10)}])
    for c in (cb, ca):
        assert [c.recv()["message"]["delta"]["type"] for _ in range(2)] == ["insert", "delete"]
        c.expect_silence(0.3)


def test_token_acquired_on_one_process_is_gone_on_the_others(cluster, connect):
    a, b = cluster(2, **ENV)
    token = backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
    connect(b).ok("datasync", "acquireSubscription", {"token": token})
    assert wait_metric(a, "snorky_datasync_acquired_elsewhere_total", 1, timeout=15) == 1
    answer = connect(a).call("datasync", "acquireSubscription", {"token": token})
    assert answer == {"type": "error", "callId": answer["callId"], "message": "No such subscription"}


def test_expiry_is_cluster_wide(cluster, connect):
    a, b = cluster(2, **ENV)
    token = backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
    # the pending subscription lives on A (B only knows A holds it): A expires it
    assert wait_metric(a, "snorky_datasync_subscriptions_expired_total", 1, timeout=15) == 1
    for srv in (b, a):  # B's acquisition asks A, which has it no more
        assert connect(srv).call("datasync", "acquireSubscription", {"token": token})["message"] == "No such subscription"


def test_acquired_elsewhere_while_deltas_flow_each_delta_once_in_order(cluster, connect):
    """Authorized on A, acquired on B (which takes the pending subscription over
    from A) while both publish without pause: every delta published after the
    authorization reaches the page once, in order."""
    a, b = cluster(2, **ENV)
    for before in range(4):
        acquire_while_publishing(
            lambda: backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"],
            [lambda d, srv=srv: backend(srv, "publishDeltas", deltas=d) for srv in (a, b)],
            lambda: connect(b), ["Todo"], before=before)


def test_an_acquisition_right_after_publish_deltas_answered_has_its_deltas(cluster, connect):
    """publishDeltas answered on B (no subscriber there): an acquisition on A (the
    token's owner) or on C (which takes it over) has those deltas before its answer."""
    a, b, c = cluster(3, **ENV)
    for taker in (a, c, a, c):
        token = backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
        backend(b, "publishDeltas", deltas=[{"type": "insert", "model": "Todo", "data": todo(1)}])
        page = connect(taker)
        page.send("datasync", {"command": "acquireSubscription", "params": {"token": token}, "callId": 9})
        first = page.recv()["message"]
        assert first["type"] == "delta" and first["delta"]["data"] == todo(1), first
        assert page.recv()["message"] == {"type": "response", "callId": 9, "data": None}

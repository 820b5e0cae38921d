"""A killed process: its clients reconnect to another one and everything converges."""
import signal

from .test_datasync_cluster import ENV, backend, todo


def test_clients_of_a_killed_process_reconnect_elsewhere_and_resume(cluster, connect):
    a, b = cluster(2, **ENV)
    # a DataSync authorization made through the process that is about to die
    token = backend(b, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
    on_b = [connect(b) for _ in range(5)]
    for c in on_b:
        c.ok("pubsub", "subscribe", {"channel": "k"})
    on_a = connect(a)
    on_a.ok("pubsub", "subscribe", {"channel": "k"})
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    # what a client does when its server vanishes: reconnect to another one, restore state
    moved = []
    for c in on_b:
        c.close()
        n = connect(a)
        n.ok("pubsub", "subscribe", {"channel": "k"})
        moved.append(n)
    # the page that got the token tries it on the surviving process: refused, not granted
    # without the deltas b had buffered for it (they died with b); the page gets a new token
    acquirer = connect(a)
    answer = acquirer.call("datasync", "acquireSubscription", {"token": token})
    assert (answer["type"], answer.get("message")) == ("error", "No such subscription"), answer
    token = backend(a, "authorizeSubscription", items=[{"dealer": "allTodos", "query": None}])["data"]
    acquirer.ok("datasync", "acquireSubscription", {"token": token})
    backend(a, "publishDeltas", deltas=[{"type": "insert", "model": "Todo", "data": todo(1)}])
    assert acquirer.next_notification()["message"]["delta"]["data"] == todo(1)
    pub = connect(a)
    pub.ok("pubsub", "publish", {"channel": "k", "message": "still here"})
    for c in moved + [on_a]:
        assert c.next_notification()["message"] == {"type": "message", "channel": "k", "message": "still here"}

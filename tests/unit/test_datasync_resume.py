"""DataSync subscriptions that survive a short disconnection (resume_window)."""
from snorky_sync.services.datasync import BroadcastDealer, DataSyncBackend, DataSyncService
from support.fakes import FakeClient, rpc


class AllPlayers(BroadcastDealer):
    model = "Player"


class ManualTimeouts:
    def __init__(self):
        self.pending = []

    def call_later(self, delay, fn, *args):
        handle = type("H", (), {"cancelled": False})()
        handle.cancel = lambda: (setattr(handle, "cancelled", True), self.pending.remove(entry))
        entry = (fn, args, handle)
        self.pending.append(entry)
        return handle

    def run_all(self):
        while self.pending:
            fn, args, _ = self.pending.pop(0)
            fn(*args)


def setup(**kw):
    svc = DataSyncService("datasync", [AllPlayers], **kw)
    svc.resume_timeout_factory = timeouts = ManualTimeouts()
    backend = DataSyncBackend("datasync_backend", svc)
    token = rpc(backend, FakeClient(), "authorizeSubscription",
                {"items": [{"dealer": "AllPlayers", "query": None}]})["data"]
    return svc, backend, token, timeouts


def publish(backend, n):
    rpc(backend, FakeClient(), "publishDeltas",
        {"deltas": [{"type": "insert", "model": "Player", "data": {"id": n}}]})


def acquire(svc, client, token, since=None, **more):
    client.frames.clear()
    params = {"token": token} if since is None else {"token": token, "since": since}
    params.update(more)
    svc.process_message_from(client, {"command": "acquireSubscription", "params": params, "callId": 1})
    got = client.pop_messages()
    return got[:-1], got[-1]


def test_without_a_window_deltas_are_01s_and_a_drop_cancels():
    svc, backend, token, _ = setup()
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    assert page.pop_messages() == [{"type": "delta", "delta": {"type": "insert", "model": "Player", "data": {"id": 1}}}]
    svc.client_disconnected(page)
    assert svc.subscriptions == {}
    assert acquire(svc, FakeClient(), token, since=0)[1]["message"] == "Resumption not enabled"


def test_a_page_that_comes_back_in_time_gets_what_it_missed_in_order():
    svc, backend, token, timeouts = setup(resume_window=60)
    page = FakeClient()
    _, answer = acquire(svc, page, token)
    assert answer["data"] is None                         # first acquisition: as in 0.1
    publish(backend, 1)
    (first,) = page.pop_messages()
    assert first["seq"] >= 1
    svc.client_disconnected(page)                         # the connection drops
    publish(backend, 2)
    publish(backend, 3)
    again = FakeClient()
    replay, answer = acquire(svc, again, token, since=first["seq"])
    assert [m["delta"]["data"]["id"] for m in replay] == [2, 3]
    assert answer["data"] == {"recovered": True, "epoch": svc.epoch}
    assert timeouts.pending == []                         # the window's timer was stopped
    publish(backend, 4)
    assert [m["delta"]["data"]["id"] for m in again.pop_messages()] == [4]


def test_a_delta_in_flight_when_the_connection_dropped_is_sent_again():
    svc, backend, token, _ = setup(resume_window=60)
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    publish(backend, 2)                                   # queued for the page, never read
    seqs = [m["seq"] for m in page.pop_messages()]
    svc.client_disconnected(page)
    replay, answer = acquire(svc, FakeClient(), token, since=seqs[0])   # it only saw the first
    assert [m["delta"]["data"]["id"] for m in replay] == [2] and answer["data"]["recovered"] is True


def test_too_late_or_too_much_missed_is_said_explicitly():
    svc, backend, token, timeouts = setup(resume_window=60, resume_buffer=2)
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    seq = page.pop_messages()[0]["seq"]
    svc.client_disconnected(page)
    for n in (2, 3, 4):                                   # more than the buffer holds
        publish(backend, n)
    replay, answer = acquire(svc, FakeClient(), token, since=seq)
    assert replay == [] and answer["data"] == {"recovered": False, "epoch": svc.epoch}
    assert svc.subscriptions == {}                        # cancelled: fetch data and a new token

    svc2, backend2, token2, timeouts2 = setup(resume_window=60)
    page = FakeClient()
    acquire(svc2, page, token2)
    svc2.client_disconnected(page)
    timeouts2.run_all()                                   # the window passes
    assert acquire(svc2, FakeClient(), token2, since=0)[1]["message"] == "No such subscription"


def test_resume_needs_since_and_an_int():
    svc, backend, token, _ = setup(resume_window=60)
    page = FakeClient()
    acquire(svc, page, token)
    svc.client_disconnected(page)
    assert acquire(svc, FakeClient(), token)[1]["message"] == "Subscription already acquired"
    assert acquire(svc, FakeClient(), token, since="3")[1]["message"] == "Invalid params"


def test_deltas_carry_the_epoch_of_their_seq():
    svc, backend, token, _ = setup(resume_window=60)
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    publish(backend, 2)
    got = page.pop_messages()
    assert [(m["seq"], m["epoch"]) for m in got] == [(1, svc.epoch), (2, svc.epoch)]
    assert isinstance(svc.epoch, str) and len(svc.epoch) == 16
    # another process (or this one after a restart) has another epoch and starts at 1 again
    other, backend2, token2, _ = setup(resume_window=60)
    assert other.epoch != svc.epoch
    page2 = FakeClient()
    acquire(other, page2, token2)
    publish(backend2, 1)
    assert [(m["seq"], m["epoch"]) for m in page2.pop_messages()] == [(1, other.epoch)]
    # buffered deltas of a pending subscription and replayed ones carry it too
    token3 = rpc(backend, FakeClient(), "authorizeSubscription",
                 {"items": [{"dealer": "AllPlayers", "query": None}]})["data"]
    publish(backend, 3)
    page3 = FakeClient()
    buffered, _ = acquire(svc, page3, token3)
    assert [m["epoch"] for m in buffered] == [svc.epoch] and buffered[0]["seq"] > 2
    svc.client_disconnected(page)
    publish(backend, 4)
    replay, answer = acquire(svc, FakeClient(), token, since=2, epoch=svc.epoch)
    assert [(m["delta"]["data"]["id"], m["epoch"]) for m in replay] == [(3, svc.epoch), (4, svc.epoch)]
    assert answer["data"] == {"recovered": True, "epoch": svc.epoch}


def test_without_a_window_no_epoch_either():
    svc, backend, token, _ = setup()
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    assert set(page.pop_messages()[0]) == {"type", "delta"}          # 0.1's frame
    assert acquire(svc, FakeClient(), token, since=1, epoch="x")[1]["message"] == "Resumption not enabled"


def test_after_a_restart_the_old_position_is_not_recovered_and_the_new_epoch_is_said():
    old, old_backend, old_token, _ = setup(resume_window=60)
    page = FakeClient()
    acquire(old, page, old_token)
    for n in range(5):
        publish(old_backend, n)
    last = page.pop_messages()[-1]
    assert last["seq"] == 5
    # the server restarts: a new service, the old token unknown to it
    new, new_backend, new_token, _ = setup(resume_window=60)
    back = FakeClient()
    replay, answer = acquire(new, back, old_token, since=last["seq"], epoch=last["epoch"])
    assert replay == [] and answer["data"] == {"recovered": False, "epoch": new.epoch}
    # the page loads again: its new subscription's deltas start at 1 in the new epoch
    acquire(new, back, new_token)
    publish(new_backend, 9)
    (delta,) = back.pop_messages()
    assert (delta["seq"], delta["epoch"], delta["delta"]["data"]["id"]) == (1, new.epoch, 9)
    # without the epoch (snorky.js before it), an unknown token is still No such subscription
    assert acquire(new, FakeClient(), old_token, since=5)[1]["message"] == "No such subscription"


def test_another_epoch_never_resumes_and_answers_the_same_for_any_token():
    svc, backend, token, timeouts = setup(resume_window=60)
    page = FakeClient()
    acquire(svc, page, token)
    publish(backend, 1)
    seq = page.pop_messages()[0]["seq"]
    svc.client_disconnected(page)
    publish(backend, 2)
    for t in (token, "0" * 32):
        replay, answer = acquire(svc, FakeClient(), t, since=seq, epoch="f" * 16)
        assert replay == [] and answer["data"] == {"recovered": False, "epoch": svc.epoch}
    # the detached subscription is untouched: its own page resumes it with the right epoch
    replay, answer = acquire(svc, FakeClient(), token, since=seq, epoch=svc.epoch)
    assert [m["delta"]["data"]["id"] for m in replay] == [2]
    assert answer["data"] == {"recovered": True, "epoch": svc.epoch}


def test_a_pending_copy_of_a_subscription_acquired_in_another_epoch_is_dropped():
    # with Redis every process holds a pending copy of each authorization until
    # it is acquired somewhere; a page resuming here from another process's
    # epoch had acquired it there: this copy (and its buffered deltas) is stale
    svc, backend, token, _ = setup(resume_window=60)
    publish(backend, 1)
    replay, answer = acquire(svc, FakeClient(), token, since=7, epoch="a" * 16)
    assert replay == [] and answer["data"] == {"recovered": False, "epoch": svc.epoch}
    assert svc.subscriptions == {}


def test_epoch_params_are_checked():
    svc, backend, token, _ = setup(resume_window=60)
    for bad in ({"epoch": 5, "since": 0}, {"epoch": "x" * 65, "since": 0}, {"epoch": svc.epoch}):
        assert acquire(svc, FakeClient(), token, **bad)[1]["message"] == "Invalid params", bad
    assert svc.pending  # nothing acquired, nothing cancelled

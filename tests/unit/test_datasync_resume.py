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


def acquire(svc, client, token, since=None):
    client.frames.clear()
    params = {"token": token} if since is None else {"token": token, "since": since}
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
    assert answer["data"] == {"recovered": True}
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
    assert replay == [] and answer["data"] == {"recovered": False}
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

"""snorky_sync.hub.idle(max_wait): wakes when the hub is idle, or at max_wait on a
hub that never is; each waiter, however many wait at once, wakes by its own
idle watcher and timer (taken from a per-hub pool and given back stopped)."""
import contextlib
import threading

import gevent
import pytest

from snorky_sync import hub


@contextlib.contextmanager
def spinning():
    """A greenlet that keeps the hub from ever being idle while it runs;
    the yielded dict's ``spins`` counts its turns, ``run = False`` stops it."""
    state = {"run": True, "spins": 0}

    def spin():
        while state["run"]:
            state["spins"] += 1
            gevent.sleep(0)  # a callback every loop iteration: never idle

    g = gevent.spawn(spin)
    gevent.sleep(0)
    try:
        yield state
    finally:
        state["run"] = False
        g.join(5)


@pytest.fixture(autouse=True)
def own_hub(request, monkeypatch):
    """Each test runs in a thread of its own, so on a hub of its own (gevent
    keeps one per thread) with an empty pool of pairs. This process is not
    monkey-patched and runs other tests: a greenlet one of them left on the
    main thread's hub could block that whole hub for seconds (a blocking
    socket read) whenever it switches to the hub, and every timer of the
    test would then fall due at once (CI: joinall's 20 s beat 84 waiters of
    2.5 s, and the test saw none finish)."""
    test = request.node.obj
    failure = []

    def run(**kwargs):
        try:
            test(**kwargs)
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)
        finally:
            gevent.get_hub().destroy(destroy_loop=True)

    def in_thread(**kwargs):
        t = threading.Thread(target=run, kwargs=kwargs, daemon=True)
        t.start()
        t.join(120)
        assert not t.is_alive(), "the test's thread did not finish within 120 s"
        if failure:
            raise failure[0]

    monkeypatch.setattr(request.node, "obj", in_thread)
    yield


def pool(max_wait):
    return getattr(gevent.get_hub(), hub._FREE, {}).get(max_wait, [])


def test_an_idle_hub_wakes_the_waiter_long_before_max_wait():
    with gevent.Timeout(10, AssertionError("idle(3600) did not wake on an idle hub")):
        hub.idle(3600)


def test_a_hub_that_is_never_idle_wakes_it_at_max_wait():
    with spinning() as busy:
        before = busy["spins"]
        with gevent.Timeout(10, AssertionError("idle(0.05) did not wake on a busy hub")):
            hub.idle(0.05)
        assert busy["spins"] > before  # the others ran meanwhile: it was not woken by an idle moment


def test_one_pair_serves_a_caller_again_and_again():
    for _ in range(100):
        hub.idle(1.5)
    (quiet, timer), = pool(1.5)
    assert not quiet.active and not timer.active
    hub.idle(1.5)
    assert pool(1.5) == [(quiet, timer)]


def test_concurrent_waiters_do_not_take_each_others_wakeups():
    with spinning() as busy:
        long_wait = gevent.spawn(hub.idle, 3600)   # wakes only when the hub is idle
        gevent.sleep(0)
        woken = []

        def short(i):
            for _ in range(10):
                hub.idle(0.01)
            woken.append(i)

        shorts = [gevent.spawn(short, i) for i in range(5)]
        assert gevent.joinall(shorts, timeout=20) and sorted(woken) == list(range(5))
        # 50 short waits came and went, several pairs in use at once: none woke the long one
        assert not long_wait.dead
        assert len(pool(0.01)) == 5
        busy["run"] = False                        # now the hub goes idle
        long_wait.join(10)
        assert long_wait.successful()


def test_a_killed_waiter_gives_its_pair_back_stopped():
    with spinning():
        g = gevent.spawn(hub.idle, 0.2)
        gevent.sleep(0)
        g.kill()
        assert g.dead
        (quiet, timer), = pool(0.2)
        assert not quiet.active and not timer.active   # neither can fire into the next waiter
        nxt = gevent.spawn(hub.idle, 0.2)
        nxt.join(10)
        assert nxt.successful() and pool(0.2) == [(quiet, timer)]


def test_the_pool_is_bounded():
    waiters = [gevent.spawn(hub.idle, 2.5) for _ in range(hub.MAX_FREE + 20)]
    assert gevent.joinall(waiters, timeout=20) and all(w.successful() for w in waiters)
    assert len(pool(2.5)) == hub.MAX_FREE
    keys = [100.0 + i for i in range(hub.MAX_KEYS + 4)]
    for k in keys:
        hub.idle(k)
    assert len(getattr(gevent.get_hub(), hub._FREE)) <= hub.MAX_KEYS

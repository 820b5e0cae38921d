"""The Todos demo in Chromium on two gunicorn workers sharing Redis (issue #25 item 4).

The page's connection drops and it reconnects wherever the kernel sends it
(no sticky sessions). A todo is added while it is away. When it lands on the
other worker its subscription is taken over there: the page shows the todo,
keeps its token (no reload: ``datasync.subscriptionsLost`` never fires) and
counts in the other worker's epoch.
"""
import pytest
from cluster.conftest import RedisServer, wait_broker

from support.servers import ServerProcess

from .test_todos_restart import api, wait_list

T = 30000  # ms: generous, the machine is shared


@pytest.fixture
def two_workers(tmp_path):
    redis = RedisServer().start()
    srv = ServerProcess("gunicorn-gevent", app="wsgi:app", workers=2,
                        env={"SNORKY_DEMOS": "1", "SNORKY_REDIS_URL": redis.url,
                             "SNORKY_DEMO_DATABASE_URL": f"sqlite:///{tmp_path}/todos.db"})
    try:
        wait_broker(srv)
        yield srv
    finally:
        srv.stop()
        redis.kill()


def test_the_todos_page_resumes_on_the_other_worker(two_workers, pages, screenshot):
    base = two_workers.url
    (page,) = pages(1)
    page.goto(base + "/demos/todos")
    page.wait_for_selector("body[data-ready='1']", timeout=T)
    page.evaluate("""() => {
        window.lost = 0; window.recovered = 0;
        datasync.subscriptionsLost.add(() => { window.lost += 1; });
        datasync.recovered.add(() => { window.recovered += 1; });
        // time to change something while it is away
        snorky.options.reconnectDelay = 1500; snorky.options.maxReconnectDelay = 1500;
    }""")
    api(base, "POST", body={"title": "before"})
    shown = [("before", False)]
    wait_list(page, shown)
    (token,) = page.evaluate("() => datasync.acquired.values()")
    first_epoch = page.evaluate("() => datasync.epoch")
    assert first_epoch

    for attempt in range(30):  # until a reconnection lands on the other worker
        page.evaluate("() => snorky._socket.close()")
        page.wait_for_selector("#status[data-state='disconnected']", timeout=T)
        api(base, "POST", body={"title": f"while away {attempt}"})
        shown.append((f"while away {attempt}", False))
        page.wait_for_selector("#status[data-state='connected']", timeout=T)
        page.wait_for_function("n => window.recovered + window.lost >= n", arg=attempt + 1, timeout=T)
        wait_list(page, shown)
        assert page.evaluate("() => [window.lost, datasync.acquired.values()]") == [0, [token]]
        if page.evaluate("() => datasync.epoch") != first_epoch:
            break
    else:
        raise AssertionError("30 reconnections never reached the other worker")

    # live again, from the other worker: one more change shows once
    api(base, "POST", body={"title": "after"})
    wait_list(page, shown + [("after", False)])
    assert page.evaluate("() => window.lost") == 0
    screenshot(page, "resumed")

"""docs/writing-a-service.md's poll (Service.join_group / broadcast_group / shared),
run from the page under gunicorn -k gevent -w 2 with a real redis-server.

Before the API a service's state and its broadcasts stayed in the worker that
ran them: a page on the other worker never heard of a vote, and each worker
counted its own votes.
"""
from support.servers import ROOT, ServerProcess, free_port
from support.waiting import attempts
from support.wsclient import SnorkyTestClient

from .test_own_app import clients_on_two_workers, wait_healthy

PAGE = ROOT / "docs" / "writing-a-service.md"

PID = """
import os as _os
from snorky_sync import RPCService as _RPCService, rpc_command as _rpc_command

class _Worker(_RPCService):   # test-only: which worker a connection reached
    @_rpc_command
    def pid(self, req):
        return _os.getpid()
"""


def page_app(tmp_path, redis_url):
    page = PAGE.read_text()
    code = page.split("```python\n# pollapp.py\n", 1)[1].split("```", 1)[0]
    assert "SNORKY_WORKERS=2" in page and "gunicorn -c python:snorky_sync.gunicorn_conf pollapp:app" in page
    # the page mounts ServiceRegistry([PollService("poll")]); the test adds its pid service
    mounted = 'ServiceRegistry([PollService("poll")])'
    assert mounted in code
    code = code.replace(mounted, 'ServiceRegistry([PollService("poll"), _Worker("worker")])')
    health = '\napp.extensions["snorky_sync"].extension.health("/healthz")  # test-only: the broker\'s state\n'
    (tmp_path / "pollapp.py").write_text(PID + code + health)
    port = free_port()
    return ServerProcess(args=["-m", "gunicorn", "--no-control-socket", "-c", "python:snorky_sync.gunicorn_conf",
                               "pollapp:app"],
                         port=port, cwd=tmp_path,
                         env={"SNORKY_WORKERS": "2", "SNORKY_REDIS_URL": redis_url})


def on_worker(srv, clients, pid):
    """A new client connected to worker ``pid``."""
    for _ in attempts():
        c = SnorkyTestClient(srv.ws_url + "/ws")
        clients.append(c)
        c.worker_pid = c.ok("worker", "pid")
        if c.worker_pid == pid:
            return c
    raise AssertionError(f"no connection reached worker {pid}")


def is_votes(msg):
    return msg.get("type") == "votes"


def test_poll_page_on_two_workers(tmp_path, redis_server):
    srv = page_app(tmp_path, redis_server.url)
    clients = []
    try:
        wait_healthy(srv)
        (pid_a, a), (pid_b, b) = clients_on_two_workers(srv, clients).items()
        assert a.ok("poll", "watch", {"poll": "lunch"}) == {}
        assert b.ok("poll", "watch", {"poll": "lunch"}) == {}
        # a vote on worker B reaches the watcher on worker A, and B's own
        assert b.ok("poll", "vote", {"poll": "lunch", "option": "pizza"}) == 1
        want = {"type": "votes", "poll": "lunch", "option": "pizza", "votes": 1}
        assert a.wait_for(is_votes, timeout=10) == want
        assert b.wait_for(is_votes, timeout=10) == want
        # the count is one for both workers: A's vote is the second
        assert a.ok("poll", "vote", {"poll": "lunch", "option": "pizza"}) == 2
        assert b.wait_for(is_votes, timeout=10)["votes"] == 2
        assert a.wait_for(is_votes, timeout=10)["votes"] == 2
        assert a.ok("poll", "vote", {"poll": "lunch", "option": "salad"}) == 1
        assert b.wait_for(is_votes, timeout=10)["option"] == "salad"
        # a page arriving later, on either worker, reads the same totals
        for c in (a, b):
            assert c.ok("poll", "watch", {"poll": "lunch"}) == {"pizza": 2, "salad": 1}
        # a member that disconnects leaves the group: A's last watcher gone,
        # a vote on B still reaches B's watcher and A's new one
        a.close()
        c = on_worker(srv, clients, pid_a)
        assert c.ok("poll", "watch", {"poll": "lunch"}) == {"pizza": 2, "salad": 1}
        assert b.ok("poll", "vote", {"poll": "lunch", "option": "sushi"}) == 1
        assert c.wait_for(is_votes, timeout=10)["option"] == "sushi"
        assert b.wait_for(is_votes, timeout=10)["option"] == "sushi"
    finally:
        for c in clients:
            c.close()
        srv.stop()

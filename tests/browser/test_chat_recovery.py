"""The Chat demo with history across two processes and a real Redis: a page whose
server goes down misses no line sent meanwhile on the other server."""
import pytest

from cluster.conftest import RedisServer, wait_broker
from support.servers import ServerProcess, free_port

T = 30000
SECRET = "browser-chat-token-secret-0123456789"


class TwoServers:
    def __init__(self):
        self.redis = RedisServer().start()
        self.env = {"SNORKY_REDIS_URL": self.redis.url, "SNORKY_CHAT_HISTORY_SIZE": "200",
                    "SNORKY_TOKEN_SECRET": SECRET, "SNORKY_CLUSTER_HEARTBEAT": "0.2",
                    "SNORKY_CLUSTER_EXPIRY": "1.5"}
        self.a = self.start(free_port())
        self.b = self.start(free_port())

    def start(self, port):
        srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port, env=self.env)
        wait_broker(srv)
        return srv

    def close(self):
        for srv in (self.a, self.b):
            srv.stop()
        self.redis.kill()


@pytest.fixture
def servers():
    s = TwoServers()
    yield s
    s.close()


def test_no_chat_line_is_lost_while_the_page_s_server_is_down(servers, pages, screenshot):
    alice, bob = pages(2)
    alice.goto(servers.a.url + "/demos/chat?name=alice")
    bob.goto(servers.b.url + "/demos/chat?name=bob")
    for page in (alice, bob):
        page.wait_for_selector("body[data-ready='1']", timeout=T)
    bob.fill("#text", "before")
    bob.press("#text", "Enter")
    alice.wait_for_selector("#messages li.message:has-text('bob: before')", timeout=T)

    port = servers.a.port
    servers.a.stop()                              # alice's server goes down ...
    alice.wait_for_selector("#status[data-state='disconnected']", timeout=T)
    for text in ("while you were away 1", "while you were away 2"):
        bob.fill("#text", text)                   # ... while bob keeps talking on the other one
        bob.press("#text", "Enter")
        bob.wait_for_selector(f"#messages li.message:has-text('bob: {text}')", timeout=T)
    servers.a = servers.start(port)               # back: the page reconnects and recovers
    alice.wait_for_selector("#status[data-state='connected']:has-text('reconnected')", timeout=T)
    alice.wait_for_selector("#messages li.message:has-text('bob: while you were away 2')", timeout=T)
    bob.fill("#text", "after")
    bob.press("#text", "Enter")
    alice.wait_for_selector("#messages li.message:has-text('bob: after')", timeout=T)
    lines = alice.eval_on_selector_all("#messages li.message", "els => els.map(e => e.textContent)")
    assert lines == ["bob: before", "bob: while you were away 1", "bob: while you were away 2", "bob: after"]
    assert alice.eval_on_selector_all("#messages li.gap", "els => els.length") == 0
    screenshot(alice, "recovered")

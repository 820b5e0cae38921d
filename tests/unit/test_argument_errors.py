"""The public API's constructors and endpoint declarations check their
arguments one way (snorky_sync.checks): TypeError for a wrong kind (a str
where a number is wanted), ValueError for a bad value of the right kind (a
negative size, an empty name), each message naming the parameter."""
import re

import pytest
from flask import Flask

from snorky_sync import ServiceRegistry, Snorky
from snorky_sync.auth import ConnectionTokens, ReplayCache
from snorky_sync.backend.transports import HTTPTransport
from snorky_sync.services.chat import ChatService
from snorky_sync.services.datasync import DataSyncBackend, DataSyncService
from snorky_sync.services.datasync.dealers import BroadcastDealer
from snorky_sync.services.pubsub import PubSubService

SECRET = "s" * 32
KEY = "k" * 32


def _dealer(name, model="M"):
    return type("D", (BroadcastDealer,), {"name": name, "model": model})


def _snorky_call(method, **kwargs):
    def call():
        snorky = Snorky()
        if method in ("websocket", "sockjs"):
            getattr(snorky, method)("/ws", ServiceRegistry(), **kwargs)
        elif method == "backend":
            snorky.backend("/backend", ServiceRegistry(), **{"api_key": KEY, **kwargs})
        else:
            snorky.metrics("/metrics", **{"api_key": KEY, **kwargs})
    return call


# (what, a call with a wrong kind, a call with a bad value, the parameter as named)
CASES = [
    ("pubsub history_size", lambda: PubSubService("p", history_size="5"),
     lambda: PubSubService("p", history_size=-1), "PubSubService(history_size=...)"),
    ("chat history_ttl", lambda: ChatService("c", history_size=5, history_ttl="60"),
     lambda: ChatService("c", history_size=5, history_ttl=0), "ChatService(history_ttl=...)"),
    ("backend_only pattern", lambda: PubSubService("p", backend_only=[3]),
     lambda: PubSubService("p", backend_only=["news", ""]), "a channel pattern (backend_only)"),
    ("resume_window", lambda: DataSyncService("d", resume_window="60"),
     lambda: DataSyncService("d", resume_window=-1), "DataSyncService(resume_window=...)"),
    ("resume_buffer", lambda: DataSyncService("d", resume_buffer=1.5),
     lambda: DataSyncService("d", resume_buffer=0), "DataSyncService(resume_buffer=...)"),
    ("dealer name", lambda: DataSyncService("d", [_dealer(None)]),
     lambda: DataSyncService("d", [_dealer("")]), "a dealer's name"),
    ("timeout_interval", lambda: DataSyncBackend("b", DataSyncService("d"), timeout_interval="2"),
     lambda: DataSyncBackend("b", DataSyncService("d"), timeout_interval=0),
     "DataSyncBackend(timeout_interval=...)"),
    ("transport url", lambda: HTTPTransport(b"http://x/", KEY),
     lambda: HTTPTransport("ftp://x/", KEY), "HTTPTransport(url, key): url"),
    ("transport key", lambda: HTTPTransport("http://x/", 12345),
     lambda: HTTPTransport("http://x/", ""), "HTTPTransport(url, key): key"),
    ("transport timeout", lambda: HTTPTransport("http://x/", KEY, timeout="5"),
     lambda: HTTPTransport("http://x/", KEY, timeout=-5), "HTTPTransport(timeout=...)"),
    ("transport maxsize", lambda: HTTPTransport("http://x/", KEY, maxsize="10"),
     lambda: HTTPTransport("http://x/", KEY, maxsize=0), "HTTPTransport(maxsize=...)"),
    ("replay cache", lambda: ReplayCache("10"), lambda: ReplayCache(0), "ReplayCache(max_entries)"),
    ("token secret", lambda: ConnectionTokens(12345678901234567890),
     lambda: ConnectionTokens("short"), "ConnectionTokens(secret)"),
    ("token max_age", lambda: ConnectionTokens(SECRET, max_age="3600"),
     lambda: ConnectionTokens(SECRET, max_age=0), "ConnectionTokens(max_age=...)"),
    ("token param", lambda: ConnectionTokens(SECRET, param=None),
     lambda: ConnectionTokens(SECRET, param=""), "ConnectionTokens(param=...)"),
    ("replay_cache_size", lambda: ConnectionTokens(SECRET, single_use=True, replay_cache_size="9"),
     lambda: ConnectionTokens(SECRET, single_use=True, replay_cache_size=0),
     "ConnectionTokens(replay_cache_size=...)"),
    ("websocket ping_interval", _snorky_call("websocket", ping_interval="30"),
     _snorky_call("websocket", ping_interval=-1), "Snorky.websocket(ping_interval=...)"),
    ("websocket max_frame_size", _snorky_call("websocket", max_frame_size=1.5),
     _snorky_call("websocket", max_frame_size=-1), "Snorky.websocket(max_frame_size=...)"),
    ("sockjs heartbeat", _snorky_call("sockjs", heartbeat="25"),
     _snorky_call("sockjs", heartbeat=-1), "Snorky.sockjs(heartbeat=...)"),
    ("sockjs rate_limit", _snorky_call("sockjs", rate_limit="5"),
     _snorky_call("sockjs", rate_limit=-5), "Snorky.sockjs(rate_limit=...)"),
    ("backend api_key", _snorky_call("backend", api_key=b"k" * 32),
     _snorky_call("backend", api_key="short"), "Snorky.backend(api_key=...)"),
    ("backend max_body_size", _snorky_call("backend", max_body_size="1M"),
     _snorky_call("backend", max_body_size=-1), "Snorky.backend(max_body_size=...)"),
    ("metrics only_port", _snorky_call("metrics", only_port="9000"),
     _snorky_call("metrics", only_port=-1), "Snorky.metrics(only_port=...)"),
]


@pytest.mark.parametrize("what, wrong_kind, bad_value, where", CASES, ids=[c[0] for c in CASES])
def test_a_wrong_kind_is_a_type_error_and_a_bad_value_a_value_error(what, wrong_kind, bad_value, where):
    with pytest.raises(TypeError, match=re.escape(where)) as kind:
        wrong_kind()
    with pytest.raises(ValueError, match=re.escape(where)) as value:
        bad_value()
    assert type(kind.value) is TypeError and type(value.value) is ValueError


@pytest.mark.parametrize("method, option", [("websocket", "ping_interval"), ("websocket", "max_connections"),
                                            ("websocket", "max_queue_frames"), ("sockjs", "heartbeat"),
                                            ("sockjs", "disconnect_delay"), ("sockjs", "response_limit")])
def test_a_zero_that_would_silently_mean_the_setting_is_refused(method, option):
    # these options fall back to their setting when not given: 0 was taken as not given
    with pytest.raises(ValueError, match=re.escape(f"Snorky.{method}({option}=...)")):
        _snorky_call(method, **{option: 0})()


def test_the_api_key_error_still_says_how_long_it_must_be():
    with pytest.raises(ValueError, match="at least 16 characters, got 5"):
        Snorky(Flask("x")).backend("/backend", ServiceRegistry(), api_key="short")

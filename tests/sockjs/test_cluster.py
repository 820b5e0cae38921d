"""SockJS without sticky sessions: the requests of one polling session land on
different processes sharing a real redis-server, and the session still works."""
import json
import uuid

import pytest
import requests
from cluster.conftest import RedisServer, wait_broker

from support.servers import API_KEY, ServerProcess, free_port
from support.waiting import wait_for

from .rawhttp import Stream, request


@pytest.fixture
def redis_server():
    r = RedisServer().start()
    yield r
    r.kill()


def envelope(service, command, params, call_id):
    return json.dumps({"service": service, "message": {"command": command, "params": params,
                                                       "callId": call_id}})


def send(url, *messages):
    return request("POST", url + "/xhr_send", {"Connection": "close"},
                   json.dumps(list(messages)).encode())


def poll(url):
    r = request("POST", url + "/xhr", {"Connection": "close"})
    assert r.status == 200
    return r.data


def messages(frame: bytes):
    assert frame.startswith(b"a["), frame
    return [json.loads(m) for m in json.loads(frame[1:])]


def test_two_hosts_share_polling_sessions(redis_server):
    hosts = []
    try:
        for _ in range(2):
            port = free_port()
            hosts.append(ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                       env={"SNORKY_REDIS_URL": redis_server.url,
                                            "SNORKY_SOCKJS_DISCONNECT_DELAY": "1"}))
            wait_broker(hosts[-1])
        a, b = (h.url + "/sockjs/000/" + str(uuid.uuid4()) for h in hosts)
        sid = a.rsplit("/", 1)[1]
        on_a, on_b = hosts[0].url + "/sockjs/1/" + sid, hosts[1].url + "/sockjs/2/" + sid
        assert poll(on_a) == b"o\n"                      # the session lives on A
        assert send(on_b, envelope("pubsub", "subscribe", {"channel": "c"}, 1)).status == 204
        assert messages(poll(on_b).strip()) == [          # answered through B
            {"service": "pubsub", "message": {"type": "response", "callId": 1, "data": None}}]
        stream = Stream("POST", on_b + "/xhr_streaming")  # a streaming receiver on B
        assert stream.read() == b"h" * 2048 + b"\n"
        # published on B's backend: delivered by A to its session, written by B
        r = requests.post(hosts[1].url + "/backend", headers={"X-Backend-Key": API_KEY},
                          json={"service": "pubsub_backend",
                                "message": {"command": "publish", "params": {"channel": "c", "message": "hi"}}})
        assert r.status_code == 200
        assert messages(stream.read().strip()) == [
            {"service": "pubsub", "message": {"type": "message", "channel": "c", "message": "hi"}}]
        assert send(on_a, envelope("pubsub", "publish", {"channel": "c", "message": 2}, 2)).status == 204
        got = messages(stream.read().strip())
        assert got[0]["message"] == {"type": "message", "channel": "c", "message": 2}
        stream.close()  # the client goes away: the owner closes the session (1002)
        def interrupted():  # until A hears of the detach
            data = poll(on_b)
            assert data in (b'c[1002,"Connection interrupted"]\n', b'c[2010,"Another connection still open"]\n')
            return data == b'c[1002,"Connection interrupted"]\n'
        wait_for(interrupted, 10, "B's poll to end with 1002")
        assert request("POST", hosts[1].url + "/sockjs/0/nosuch/xhr_send", body=b'["x"]').status == 404
        # a session nobody polls expires on its owner; then B answers 404 for it too
        other = hosts[1].url + "/sockjs/0/" + str(uuid.uuid4())
        assert poll(other) == b"o\n"
        on_a_other = hosts[0].url + "/sockjs/0/" + other.rsplit("/", 1)[1]
        assert send(on_a_other, envelope("pubsub", "subscribe", {"channel": "d"}, 3)).status == 204
        wait_for(lambda: send(on_a_other, "x").status == 404, 10, "the unpolled session to expire", interval=0.2)
    finally:
        for h in hosts:
            h.stop()


def test_gunicorn_two_workers_without_sticky_sessions(redis_server):
    srv = ServerProcess("gunicorn-gevent", app="tests.integration.testapp:app", workers=2,
                        env={"SNORKY_REDIS_URL": redis_server.url})
    try:
        # both workers' brokers: the log is the only place both report
        wait_for(lambda: srv.log().count("Redis broker connected") >= 2, 20, "both workers' brokers connected")
        url = srv.url + "/sockjs/000/" + str(uuid.uuid4())
        assert poll(url) == b"o\n"
        pids, relayed = set(), 0
        for call_id in range(1, 201):
            assert send(url, envelope("inspect", "state", {}, call_id)).status == 204
            (reply,) = messages(poll(url).strip())
            assert reply["message"]["callId"] == call_id
            state = reply["message"]["data"]
            pids.add(state["pid"])
            relayed = state["counters"].get("sockjs_relayed_in", 0)
            if relayed and call_id >= 10:
                break
        assert len(pids) == 1  # the session lives on one worker...
        assert relayed > 0     # ...and the other handed requests over to it
    finally:
        srv.stop()

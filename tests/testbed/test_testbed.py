"""Issue #26 item 3: clients through a real nginx land on different hosts
(network namespaces, gunicorn -k gevent -w 2 each, three Redis shards), a
publish reaches subscribers on every host, the channels spread over the
shards (each one's subscriptions and history on its own shard only), and
when a host dies (SIGKILL of all its processes) its clients see the close,
reconnect through nginx to the other hosts and recover what was published
meanwhile on a channel of each shard (PubSub history, ``since``)."""
import json

import requests
import websocket

from bench import testbed as tb
from snorky_sync.auth import ConnectionTokens
from support.sockjs_client import SockJSClient
from support.waiting import wait_for
from support.wsclient import SnorkyTestClient

from .conftest import HOSTS, backend, channels_per_shard, history_key, hosts_of, shards, wire_channel

TOKENS = ConnectionTokens(tb.TOKEN_SECRET)


def client(state, identity: str) -> SnorkyTestClient:
    return SnorkyTestClient(f"{state.ws_url}/ws?token={TOKENS.create(identity)}")


def closed(c: SnorkyTestClient, timeout: float = 15) -> list:
    """Read ``c`` until its connection ends (nginx closes it when the host's
    socket goes); returns what arrived before.  Fails after ``timeout`` s."""
    got = []
    c.ws.settimeout(timeout)
    while True:
        try:
            raw = c.ws.recv()
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"the connection stayed open for {timeout} s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return got
        if raw == "":
            return got
        got.append(json.loads(raw))


def by_feed(c: SnorkyTestClient, feeds: list[str], n: int) -> dict[str, list[dict]]:
    """{feed: its PubSub messages}, read from ``c`` until each feed has ``n``
    (a feed with more by then, a duplicate, shows in its list)."""
    got: dict[str, list[dict]] = {f: [] for f in feeds}
    while any(len(v) < n for v in got.values()):
        msg = c.next_notification()["message"]
        if msg.get("type") == "message":
            got[msg["channel"]].append(msg)
    return got


def test_clients_through_nginx_land_on_every_host_and_a_publish_reaches_them_all(testbed):
    names = {h.netns for h in testbed.hosts}
    processes = backend(testbed, "info")["processes"]
    assert sorted(p["host"] for p in processes) == sorted([*names] * 2)  # 3 hosts x 2 workers, one Redis
    clients = [client(testbed, f"spread-{i}") for i in range(3 * HOSTS)]
    try:
        for c in clients:
            c.ok("pubsub", "subscribe", {"channel": "tb-spread"})
        where = hosts_of(testbed, [f"spread-{i}" for i in range(3 * HOSTS)])
        assert set(where.values()) == names, where
        # a SockJS session polling over xhr: each of its requests may reach another host
        sockjs = SockJSClient(testbed, "/sockjs", "xhr")
        try:
            assert sockjs.call("pubsub", "subscribe", {"channel": "tb-spread"})["type"] == "response"
            clients[0].ok("pubsub", "publish", {"channel": "tb-spread", "message": "to every host"})
            for c in clients:
                assert c.next_message("tb-spread") == "to every host"
            assert sockjs.wait_for(lambda m: m.get("type") == "message")["message"] == "to every host"
        finally:
            sockjs.close()
    finally:
        for c in clients:
            c.close()


def test_channels_spread_over_the_three_shards(testbed):
    rs = shards(testbed)
    assert len(rs) == len(tb.SHARD_PORTS) == 3
    for h in testbed.hosts:                  # every process's broker: the three shards, connected
        body = requests.get(h.url + "/healthz", timeout=5).json()
        assert [s["state"] for s in body["broker"].get("shards", [])] == ["connected"] * 3, body
    groups = channels_per_shard("tb-shard", 2, 3)
    channels = [ch for group in groups for ch in group]
    ids = [f"shard-{i}" for i in range(2 * HOSTS)]
    clients = [client(testbed, i) for i in ids]
    try:
        for c in clients:
            for ch in channels:
                c.ok("pubsub", "subscribe", {"channel": ch})
        holding = {(p["host"], p["pid"]) for p in backend(testbed, "connections", limit=1000)["processes"]
                   if any(cl["identity"] in ids for cl in p["clients"])}
        assert len({host for host, _ in holding}) > 1, holding
        for shard, group in enumerate(groups):
            for ch in group:
                # each process holding a subscriber subscribed on the channel's shard, and nowhere else
                def numsub(ch=ch):
                    return [r.pubsub_numsub(wire_channel(ch))[0][1] for r in rs]
                want = [len(holding) if i == shard else 0 for i in range(3)]
                wait_for(lambda ch=ch, want=want: numsub(ch) == want, 10,
                         f"PUBSUB NUMSUB of {ch} on the three shards to be {want} (last {numsub()})")
        for n, ch in enumerate(channels):
            clients[n % len(clients)].ok("pubsub", "publish", {"channel": ch, "message": ch})
        for c in clients:
            got = sorted(c.wait_for(lambda m: m.get("type") == "message")["message"] for _ in channels)
            assert got == sorted(channels)
        for shard, group in enumerate(groups):   # the history keys: on the channel's shard only
            for ch in group:
                assert [i for i, r in enumerate(rs) if r.exists(history_key(ch))] == [shard], ch
    finally:
        for c in clients:
            c.close()


def test_a_killed_hosts_clients_reconnect_elsewhere_and_recover_what_they_missed(testbed):
    feeds = [group[0] for group in channels_per_shard("tb-feed", 1, 3)]  # one channel on each shard
    ids = [f"kill-{i}" for i in range(3 * HOSTS)]
    clients = {i: client(testbed, i) for i in ids}
    renewed = []
    victim_index = None

    try:
        pos = {(i, f): c.ok("pubsub", "subscribe", {"channel": f}) for i, c in clients.items() for f in feeds}
        assert all(p and "epoch" in p for p in pos.values()), ("PubSub history is off", pos)
        epoch = {f: pos[ids[0], f]["epoch"] for f in feeds}
        where = hosts_of(testbed, ids)
        victim = where[ids[0]]
        victim_index = next(h.index for h in testbed.hosts if h.netns == victim)
        gone = [i for i in ids if where[i] == victim]
        staying = [i for i in ids if where[i] != victim]
        assert gone and staying, where
        publisher = clients[staying[0]]
        for n in range(5):
            for f in feeds:
                publisher.ok("pubsub", "publish", {"channel": f, "message": n})
        last = {}
        for i, c in clients.items():
            for f, got in by_feed(c, feeds, 5).items():
                assert [m["message"] for m in got] == list(range(5))
                last[i, f] = got[-1]["offset"]

        tb.kill_host(testbed, victim_index, "sigkill")
        for i in gone:                       # each sees its connection end
            assert closed(clients[i]) == []
        for n in range(5, 10):               # published while they are away
            for f in feeds:
                publisher.ok("pubsub", "publish", {"channel": f, "message": n})

        for i in gone:                       # what snorky.js does: reconnect to the same URL, subscribe since
            c = client(testbed, i)
            renewed.append(c)
            for f in feeds:
                c.send("pubsub", {"command": "subscribe", "callId": 1,
                                  "params": {"channel": f, "since": {"offset": last[i, f], "epoch": epoch[f]}}})
                replay = []
                while True:
                    msg = c.recv()["message"]
                    if msg.get("type") == "response":
                        answer = msg["data"]
                        break
                    assert msg["channel"] == f, msg
                    replay.append(msg["message"])
                assert replay == list(range(5, 10)), (i, f, replay)
                assert answer["recovered"] is True and answer["epoch"] == epoch[f], answer
        now = hosts_of(testbed, ids)
        assert victim not in now.values(), now   # landed on the other hosts
        assert len(set(now.values())) == HOSTS - 1, now

        for f in feeds:
            publisher.ok("pubsub", "publish", {"channel": f, "message": "after"})
        for c in renewed:                    # nothing twice: the next message on each feed is "after"
            for f, got in by_feed(c, feeds, 1).items():
                assert [m["message"] for m in got] == ["after"], (f, got)
        for i in staying:                    # the others got everything once, in order
            for f, got in by_feed(clients[i], feeds, 6).items():
                assert [m["message"] for m in got] == [*range(5, 10), "after"], (i, f, got)
    finally:
        for c in [*clients.values(), *renewed]:
            c.close()
        if victim_index is not None:
            tb.revive_host(testbed, victim_index)

"""A quick load generator for snorky_sync: fan-out, RPC, idle memory, handshakes.

    python -m bench.quick                 # embedded and gunicorn -k gevent, prints a table
    python -m bench.quick --subscribers 1000 --publishes 2000 --rpc-clients 50

The server runs pinned to core 0 and this generator to core 1 (when there are
two).  The generator is plain Python with raw sockets: it counts delivered
bytes instead of parsing each frame (every delivered frame has the same,
known size), which keeps it well above the server's rate for fan-out; for
RPC its own cost per round trip is reported as "generator CPU".  Results go
to bench/results/quick-YYYY-MM-DD.md.
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bench.procs import rss_kb  # noqa: E402
from support.servers import ServerProcess, free_port  # noqa: E402

ENV = {"SNORKY_API_KEY": "bench-key-0123456789abcdef", "SNORKY_RATE_LIMIT": "0", "SNORKY_CONNECT_RATE": "0",
       "SNORKY_MAX_CONNECTIONS": "50000", "SNORKY_MAX_QUEUE_FRAMES": "100000"}


def masked(obj) -> bytes:
    payload = json.dumps(obj, separators=(",", ":")).encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("handshake refused")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:100])
    return s


def server_pid(srv: ServerProcess) -> int:
    if srv.mode == "embedded":
        return srv.proc.pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("no gunicorn worker")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame_size(payload_len: int) -> int:
    """Bytes of an unmasked server frame carrying ``payload_len`` bytes."""
    return payload_len + (2 if payload_len < 126 else 4 if payload_len < 65536 else 10)


def rpc(port: int, pid: int, n_clients: int, seconds: float) -> dict:
    req = masked({"service": "pubsub", "message": {"command": "publish", "params": {"channel": "nobody", "message": "x" * 20}, "callId": 1}})
    resp_len = frame_size(len(b'{"service":"pubsub","message":{"type":"response","callId":1,"data":null}}'))
    socks = [ws_connect(port) for _ in range(n_clients)]
    sel = selectors.DefaultSelector()
    sent_at, pending, lat = {}, {}, []
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        pending[s] = 0
        sent_at[s] = time.perf_counter()
        s.send(req)
    done = 0
    cpu0, gen0 = cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for key, _ in sel.select(1):
            s = key.fileobj
            pending[s] += len(s.recv(65536))
            while pending[s] >= resp_len:
                pending[s] -= resp_len
                now = time.perf_counter()
                lat.append(now - sent_at[s])
                sent_at[s] = now
                done += 1
                s.send(req)
    dt = time.perf_counter() - t0
    cpu, gen = cpu_seconds(pid) - cpu0, time.process_time() - gen0
    for s in socks:
        s.close()
    lat.sort()
    return {"calls/s": done / dt, "p50 ms": lat[len(lat) // 2] * 1000, "p99 ms": lat[int(len(lat) * 0.99)] * 1000,
            "server CPU": cpu / dt, "generator CPU": gen / dt}


def read_frames(buf: bytearray) -> list[bytes]:
    """Split complete unmasked server frames off the front of ``buf``."""
    out = []
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        start = 2
        if n == 126:
            if len(buf) < 4:
                break
            n, start = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, start = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < start + n:
            break
        out.append(bytes(buf[start:start + n]))
        del buf[:start + n]
    return out


def latency(ports: list[int], n_subs: int, rate: float, seconds: float, probes: int = 20) -> dict:
    """Delivery latency at a fixed publish rate: ``probes`` subscribers (spread
    over ``ports``) parse every frame; the others are not read during the run."""
    subscribe = masked({"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "lat"}, "callId": 1}})
    subs = [ws_connect(ports[i % len(ports)]) for i in range(n_subs)]
    for s in subs:
        s.sendall(subscribe)
    for s in subs:
        data = b""
        while not data.endswith(b"}}"):
            data += s.recv(4096)
    # only the probes are read: the others' deliveries wait in their kernel
    # buffers (a few tens of KB), so the generator's own reading cannot delay
    # what the probes measure
    probe_set = set(subs[:probes])
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in probe_set:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = bytearray()
    pub = ws_connect(ports[0])
    stop = time.perf_counter() + seconds
    sent = [0]

    def publisher():
        interval = 1.0 / rate
        nxt = time.perf_counter()
        while nxt < stop:
            pub.sendall(masked({"service": "pubsub", "message": {"command": "publish", "params": {
                "channel": "lat", "message": {"t": time.perf_counter()}}}}))
            sent[0] += 1
            nxt += interval
            time.sleep(max(0.0, nxt - time.perf_counter()))  # pacing the fixed rate

    threading.Thread(target=publisher, daemon=True).start()
    lat, got = [], 0
    end = stop + 5
    while time.perf_counter() < end and (got < sent[0] * probes or time.perf_counter() < stop):
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if s in probe_set:
                buf = bufs[s]
                buf += chunk
                now = time.perf_counter()
                for payload in read_frames(buf):
                    msg = json.loads(payload)["message"]
                    if msg.get("type") == "message":
                        lat.append(now - msg["message"]["t"])
                        got += 1
    for s in subs + [pub]:
        s.close()
    lat.sort()
    return {"rate": rate, "p50 ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99 ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "lost": sent[0] * probes - got}


def handshakes(port: int, n: int, threads: int = 8) -> float:
    """Handshakes per second with ``threads`` clients connecting at once."""
    socks: list = []
    lock = threading.Lock()

    def worker(k):
        mine = [ws_connect(port) for _ in range(k)]
        with lock:
            socks.extend(mine)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    for s in socks:
        s.close()
    return len(socks) / dt


def idle_memory(port: int, pid: int, n: int) -> dict:
    warm = [ws_connect(port) for _ in range(100)]
    time.sleep(0.5)
    before = rss_kb(pid)
    t0 = time.perf_counter()
    socks = [ws_connect(port) for _ in range(n)]
    dt = time.perf_counter() - t0
    time.sleep(1.0)
    after = rss_kb(pid)
    for s in socks + warm:
        s.close()
    return {"KB/conn": (after - before) / n, "handshakes/s": n / dt}


def run(mode: str, args) -> dict:
    srv = ServerProcess(mode, app="wsgi:app", env=ENV)
    try:
        pid = server_pid(srv)
        if os.cpu_count() and os.cpu_count() >= 2:
            os.sched_setaffinity(pid, {0})
            os.sched_setaffinity(0, {1})
        out = {"mode": mode}
        out["fanout"] = fanout([srv.port], [pid], args.subscribers, args.publishes)
        out["rpc"] = rpc(srv.port, pid, args.rpc_clients, args.seconds)
        out["idle"] = {n: idle_memory(srv.port, pid, n) for n in args.idle}
        out["handshakes"] = handshakes(srv.port, args.handshakes)
        out["latency"] = latency([srv.port], args.subscribers, args.rate, args.seconds)
        return out
    finally:
        srv.stop()


def run_redis(args) -> dict:
    """Two processes sharing a real redis-server; subscribers split over both."""
    from cluster.conftest import RedisServer, wait_broker
    redis = RedisServer().start()
    servers = []
    try:
        for _ in range(2):
            port = free_port()
            srv = ServerProcess(args=["-m", "snorky_sync", "serve", "--port", str(port)], port=port,
                                env={**ENV, "SNORKY_REDIS_URL": redis.url})
            wait_broker(srv)
            servers.append(srv)
        ports = [s.port for s in servers]
        out = {"mode": "2 processes + Redis"}
        out["fanout"] = fanout(ports, [s.proc.pid for s in servers], args.subscribers, args.publishes)
        out["latency"] = latency(ports, args.subscribers, args.rate, args.seconds)
        # the probes alternate between the two processes; the Redis hop shows in p50/p99
        return out
    finally:
        for s in servers:
            s.stop()
        redis.kill()


def fanout(ports: list[int], pids: list[int], n_subs: int, n_pubs: int) -> dict:
    """Fan-out: ``n_subs`` subscribers spread over the servers at ``ports``, one
    publisher (on the first) pipelining ``n_pubs`` publishes; counts delivered
    bytes (every frame has the same size) and the servers' CPU."""
    subscribe = masked({"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "bench"}, "callId": 1}})
    subs = [ws_connect(ports[i % len(ports)]) for i in range(n_subs)]
    for s in subs:
        s.sendall(subscribe)
    for s in subs:
        data = b""
        while not data.endswith(b"}}"):
            data += s.recv(4096)
    body = "x" * 50
    frame_len = len(json.dumps({"service": "pubsub", "message": {"type": "message", "channel": "bench",
                                "message": {"t": 0.0, "b": body}}}, separators=(",", ":")).encode())
    size = frame_size(frame_len)
    sel = selectors.DefaultSelector()
    for s in subs:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    pub = ws_connect(ports[0])
    cpu0 = sum(cpu_seconds(p) for p in pids)
    batch = masked({"service": "pubsub", "message": {"command": "publish", "params": {
        "channel": "bench", "message": {"t": 0.0, "b": body}}}}) * 50
    t0 = time.perf_counter()
    threading.Thread(target=lambda: [pub.sendall(batch) for _ in range(n_pubs // 50)], daemon=True).start()
    got = 0
    deadline = t0 + 120
    while got < n_subs * n_pubs * size and time.perf_counter() < deadline:
        for key, _ in sel.select(1):
            try:
                got += len(key.fileobj.recv(1 << 20))
            except BlockingIOError:
                pass
    dt = time.perf_counter() - t0
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    for s in subs + [pub]:
        s.close()
    delivered = got // size
    return {"deliveries/s": delivered / dt, "publishes/s": n_pubs / dt,
            "lost": n_subs * n_pubs - delivered, "server CPU": cpu / dt}


def table(results: list[dict]) -> str:
    single = [r for r in results if "rpc" in r]
    text = table_single(single) if single else ""
    rows = ["", "| server | fan-out deliveries/s | lost | latency at %g publishes/s, same subscribers: p50 / p99 ms | probe messages lost | concurrent handshakes/s |" % (
        results[0]["latency"]["rate"]), "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lt = r["latency"]
        hs = f"{r['handshakes']:,.0f}" if "handshakes" in r else "—"
        rows.append(f"| {r['mode']} | {r['fanout']['deliveries/s']:,.0f} | {r['fanout']['lost']} | "
                    f"{lt['p50 ms']:.2f} / {lt['p99 ms']:.2f} | {lt['lost']} | {hs} |")
    return text + "\n".join(rows)


def table_single(results: list[dict]) -> str:
    rows = ["| server | fan-out deliveries/s | publishes/s | lost | server CPU | RPC calls/s | RPC p50 / p99 ms | "
            + " | ".join(f"KB/idle conn @{n}" for n in results[0]["idle"]) + " | handshakes/s (sequential) |",
            "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(results[0]["idle"]) + "---:|"]
    for r in results:
        f, p = r["fanout"], r["rpc"]
        idle = r["idle"]
        rows.append(f"| snorky_sync {r['mode']} | {f['deliveries/s']:,.0f} | {f['publishes/s']:,.0f} | {f['lost']} | "
                    f"{f['server CPU']:.0%} | {p['calls/s']:,.0f} | {p['p50 ms']:.2f} / {p['p99 ms']:.2f} | "
                    + " | ".join(f"{v['KB/conn']:.1f}" for v in idle.values())
                    + f" | {max((v['handshakes/s'] for v in idle.values()), default=0):,.0f} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quick", description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="embedded,gunicorn-gevent")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--publishes", type=int, default=2000)
    ap.add_argument("--rpc-clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--idle", default="5000,10000")
    ap.add_argument("--handshakes", type=int, default=4000)
    ap.add_argument("--rate", type=float, default=100.0, help="publishes/s for the latency run")
    ap.add_argument("--redis", action="store_true", help="also run 2 processes sharing a redis-server")
    args = ap.parse_args(argv)
    args.idle = [int(x) for x in args.idle.split(",") if x]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = [run(m, args) for m in args.modes.split(",") if m]
    if args.redis:
        results.append(run_redis(args))
    text = table(results)
    print(text)
    out = ROOT / "bench" / "results" / f"quick-{_dt.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# bench.quick, {_dt.datetime.now().isoformat(timespec='seconds')}\n\n"
                   f"`python -m bench.quick {' '.join(argv or sys.argv[1:])}` on {os.cpu_count()} cores\n\n{text}\n"
                   f"\nRaw: {json.dumps(results)}\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

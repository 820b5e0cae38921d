"""1,000 healthy subscribers and 10 that stop reading: the healthy get everything,
the stalled are cut off, and server memory stays bounded."""
import json
import resource
import selectors
import time

from support.rawws import open_ws, text_frame
from support.servers import ServerProcess

N_HEALTHY, N_STALLED, N_MESSAGES = 1000, 10, 400


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])


def test_stalled_subscribers_are_cut_off_healthy_ones_lose_nothing():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = ServerProcess("embedded", app="wsgi:app", env={
        "SNORKY_MAX_QUEUE_BYTES": str(256 * 1024), "SNORKY_SOCKET_SNDBUF": str(64 * 1024),
        "SNORKY_RATE_LIMIT": "0"})
    socks = []
    try:
        subscribe = text_frame({"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "c"}, "callId": 1}})
        healthy = [open_ws(srv.port) for _ in range(N_HEALTHY)]
        stalled = [open_ws(srv.port, rcvbuf=4096) for _ in range(N_STALLED)]
        socks = healthy + stalled
        for s in socks:
            s.sendall(subscribe)
        for s in socks:  # the subscribe responses
            data = b""
            while not data.endswith(b"}}"):
                data += s.recv(4096)
        rss_before = rss_kb(srv.proc.pid)
        body = "m" * 1000
        frame_len = len(json.dumps({"service": "pubsub", "message": {"type": "message", "channel": "c", "message": body}},
                                   separators=(",", ":")).encode()) + 4
        publisher = open_ws(srv.port)
        socks.append(publisher)
        publish = text_frame({"service": "pubsub", "message": {"command": "publish", "params": {"channel": "c", "message": body}}})
        sel = selectors.DefaultSelector()
        for s in healthy:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        received = {s: 0 for s in healthy}
        expected = N_MESSAGES * frame_len
        peak = rss_before
        sent = 0
        deadline = time.monotonic() + 120
        while min(received.values()) < expected and time.monotonic() < deadline:
            # the healthy read as fast as they can; publish as fast as they keep up
            if sent < N_MESSAGES and min(received.values()) >= (sent - 40) * frame_len:
                publisher.sendall(publish * 20)
                sent += 20
            for key, _ in sel.select(0.5):
                try:
                    chunk = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                assert chunk, "a healthy subscriber was disconnected"
                received[key.fileobj] += len(chunk)
            peak = max(peak, rss_kb(srv.proc.pid))
        assert all(v == expected for v in received.values()), "a healthy subscriber lost messages"
        # every stalled subscriber was cut off: after what the kernel holds, its stream ends
        for s in stalled:
            s.settimeout(30)
            while True:
                try:
                    chunk = s.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
        log = srv.log()
        assert log.count("slow consumer") == N_STALLED
        assert (peak - rss_before) < 300 * 1024, f"server RSS grew by {(peak - rss_before) // 1024} MB"
    finally:
        for s in socks:
            s.close()
        srv.stop()

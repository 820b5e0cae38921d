"""The attack classes of python -m bench.attacks (issue #21): each one a few threads of raw clients.

Every attack comes from 127.0.0.2 with ``Ctx.conns`` (10) hostile connections
(the slowloris variant and the closing-drain trickle hold more sockets), and
does what an attacker would: when the server closes a connection it opens a
new one.  What the attackers did is counted in ``Ctx.tally`` (messages and
requests sent, answers by status, connections the server closed).
"""
from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from bench.rawnet import Closed, Refused, http, idle, nested_lists, pump, read_frames, tcp, ws_frame, ws_open

__all__ = ["Ctx", "Attack", "ATTACKS"]


@dataclass
class Ctx:
    """What an attack needs: the server, the stop signal, the counters."""

    port: int
    max_frame: int             # the server's SNORKY_MAX_FRAME_SIZE
    max_channel: int           # the server's SNORKY_MAX_CHANNEL_SIZE
    max_cursors: int           # the server's SNORKY_MAX_CURSORS
    token: Callable[[str], str]  # a signed connection token for an identity
    conns: int = 10
    stop: threading.Event = field(default_factory=threading.Event)
    tally: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sockets: set = field(default_factory=set)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.tally[what] += n

    def keep(self, s: socket.socket) -> socket.socket:
        """Track ``s`` so that :meth:`halt` can unblock whoever uses it."""
        with self.lock:
            self.sockets.add(s)
        return s

    def drop(self, s: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(s)
        s.close()

    def halt(self) -> None:
        """Stop every attacker: set ``stop`` and shut every tracked socket down."""
        self.stop.set()
        with self.lock:
            socks = list(self.sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Attack:
    name: str          # --only NAME
    summary: str       # what it does, for the notes under the table
    bodies: Callable[[Ctx], list[Callable[[], None]]]  # one callable per attacker thread
    probe: str = "/healthz"  # what the victim's new-connection probe asks for


def forever(ctx: Ctx, one: Callable[[], None]) -> Callable[[], None]:
    """``one`` again and again until stop: a connection's life, then a new one."""
    def run() -> None:
        while not ctx.stop.is_set():
            try:
                one()
            except Refused as exc:
                ctx.count(f"refused: {exc}"[:60])
                ctx.stop.wait(0.05)
            except (OSError, ValueError):
                if not ctx.stop.is_set():
                    ctx.count("connections closed by the server")
                ctx.stop.wait(0.01)
    return run


def _ws(ctx: Ctx, path: str = "/ws", rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    s, rest = ws_open(ctx.port, path, rcvbuf=rcvbuf)
    ctx.keep(s)
    return s, rest


def _msg(service: str, command: str, params: dict, call_id: int = 1) -> bytes:
    return orjson.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


def readable(s: socket.socket) -> bool:
    p = select.poll()
    p.register(s, select.POLLIN)
    return bool(p.poll(0))


def _sid() -> str:
    return os.urandom(8).hex()


# -- 1. big messages ---------------------------------------------------------------------------

def big(ctx: Ctx):
    data = ws_frame(1, nested_lists(ctx.max_frame))

    def one() -> None:
        s, _ = _ws(ctx)
        try:
            while pump(s, data, ctx.stop):
                ctx.count("max-size messages sent")
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


def big_paced(ctx: Ctx, size: int = 61 * 1024, rate: float = 95.0):
    data = ws_frame(1, nested_lists(size))

    def one() -> None:
        s, _ = _ws(ctx)
        try:
            t = time.monotonic()
            while pump(s, data, ctx.stop):
                ctx.count("61 KB messages sent")
                t = max(t + 1 / rate, time.monotonic() - 1)
                if not idle(s, t, ctx.stop):
                    return
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


# -- 2. many messages in one SockJS frame ------------------------------------------------------

def sockjs_flood(ctx: Ctx, per_frame: int = 10000):
    envelope = _msg("pubsub", "publish", {"channel": "nobody", "message": "x"}).decode()
    data = ws_frame(1, orjson.dumps([envelope] * per_frame))

    def one() -> None:
        s, _ = _ws(ctx, f"/sockjs/000/{_sid()}/websocket")
        try:
            while pump(s, data, ctx.stop):
                ctx.count(f"SockJS frames of {per_frame:,} publishes sent")
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


# -- 3. huge xhr_send / jsonp_send bodies ------------------------------------------------------

def sockjs_send(ctx: Ctx, size: int = 10 * 1024 * 1024):
    bodies = {"xhr_send": (nested_lists(size), "text/plain"),
              "jsonp_send": (b"d=" + b"%" * (size - 2), "application/x-www-form-urlencoded")}

    def one() -> None:
        s = ctx.keep(tcp(ctx.port, timeout=60))
        try:
            sid = _sid()
            status, _ = http(s, "POST", f"/sockjs/000/{sid}/xhr", port=ctx.port)  # opens the session
            ctx.count(f"sessions opened (HTTP {status})")
            turn = 0
            while not ctx.stop.is_set():
                transport = ("xhr_send", "jsonp_send")[turn % 2]
                existing = turn % 4 < 2
                target = sid if existing else _sid()
                body, ctype = bodies[transport]
                status, _ = http(s, "POST", f"/sockjs/000/{target}/{transport}", body, ctype, ctx.port)
                ctx.count(f"10 MiB {transport} to {'its' if existing else 'no'} session: {status}")
                if existing and status == 404:  # the session ended: a new one
                    sid = _sid()
                    http(s, "POST", f"/sockjs/000/{sid}/xhr", port=ctx.port)
                turn += 1
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


# -- 4. retained state -------------------------------------------------------------------------

def retained_state(ctx: Ctx, names: int = 300):
    def one(i: int) -> Callable[[], None]:
        def run() -> None:
            s, _ = _ws(ctx, f"/ws?token={ctx.token(f'attacker-{i}-{_sid()}')}")
            try:
                frames = []
                for j in range(names):  # long names, each one parsed into ~max_channel/3 lists
                    name = orjson.loads(nested_lists(ctx.max_channel - 8, str(j).encode()))
                    frames += [_msg("pubsub", "subscribe", {"channel": name}),
                               _msg("chat", "join", {"channel": name}),
                               _msg("cursors", "join", {"document": name})]
                if not pump(s, b"".join(ws_frame(1, f) for f in frames), ctx.stop):
                    return
                ctx.count("long names joined", names * 3)
                field_size = (ctx.max_frame - 1024) // 2
                huge = nested_lists(field_size).decode()
                if not pump(s, ws_frame(1, _msg("cursors", "join", {"document": "doc"})), ctx.stop):
                    return
                for k in range(ctx.max_cursors):
                    text = ('{"service":"cursors","message":{"command":"createCursor","callId":%d,"params":'
                            '{"privateHandle":%d,"document":"doc","position":%s,"status":%s}}}'
                            % (k, k, huge, huge))
                    if not pump(s, ws_frame(1, text.encode()), ctx.stop):
                        return
                    ctx.count(f"cursors of 2 x {field_size / 2**20:.1f} MiB created")
                idle(s, float("inf"), ctx.stop)  # parked, holding it all
            finally:
                ctx.drop(s)
        return run
    return [forever(ctx, one(i)) for i in range(ctx.conns)]


# -- 5. slowloris ------------------------------------------------------------------------------

def slowloris(ctx: Ctx, conns: int = 10, piece: bytes = b"X-Pad: " + b"a" * 1000 + b"\r\n",
              every: float = 0.1):
    """``conns`` requests whose head never ends: ``piece`` every ``every`` seconds each."""
    def run() -> None:
        def opened() -> socket.socket | None:
            try:
                s = ctx.keep(tcp(ctx.port))
                s.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{ctx.port}\r\n".encode())
                s.setblocking(False)
                ctx.count("requests opened")
                return s
            except OSError:
                ctx.count("connects failed")
                return None

        socks: list[socket.socket | None] = []
        while not ctx.stop.is_set() and len(socks) < conns:
            socks.append(opened())
        try:
            while not ctx.stop.wait(every):
                for idx, s in enumerate(socks):
                    if s is None:
                        socks[idx] = opened()
                        continue
                    try:
                        if readable(s) and not s.recv(4096):
                            raise Closed("closed")
                        s.send(piece)
                    except OSError:  # the server answered and closed, or reset it
                        ctx.count("requests closed by the server")
                        ctx.drop(s)
                        socks[idx] = opened()
        finally:
            for s in socks:
                if s is not None:
                    ctx.drop(s)
    return [run]


def slowloris_many(ctx: Ctx):
    return slowloris(ctx, conns=500, piece=b"X", every=0.5)


# -- 6. streaming readers that stop reading --------------------------------------------------

def stalled_stream(ctx: Ctx, size: int = 32 * 1024, rate: float = 500.0):
    def one(i: int) -> Callable[[], None]:
        channel = f"stall-{i}"
        per_tick = max(1, int(rate / 20))  # under the message rate limit: the flooder is not cut
        publish = ws_frame(1, _msg("pubsub", "publish", {"channel": channel, "message": "x" * size})) * per_tick

        def new_stream(sender: socket.socket) -> str:
            sid = _sid()
            st = ctx.keep(tcp(ctx.port, rcvbuf=4096))  # held open, never read again (not even closed)
            st.sendall(f"POST /sockjs/000/{sid}/xhr_streaming HTTP/1.1\r\nHost: 127.0.0.1:{ctx.port}\r\n"
                       f"Content-Length: 0\r\n\r\n".encode())
            got = b""
            while b"\no\n" not in got:
                chunk = st.recv(65536)
                if not chunk:
                    raise Closed("stream refused")
                got += chunk
            sub = orjson.dumps([_msg("pubsub", "subscribe", {"channel": channel}).decode()])
            http(sender, "POST", f"/sockjs/000/{sid}/xhr_send", sub, "text/plain", ctx.port)
            ctx.count("stalled streams opened")
            return sid

        def run() -> None:
            sender = ctx.keep(tcp(ctx.port))
            flood, _ = _ws(ctx)
            try:
                sid = new_stream(sender)
                check = t = time.monotonic() + 0.5
                while pump(flood, publish, ctx.stop):
                    ctx.count(f"{size // 1024} KB publishes to a stalled session", per_tick)
                    t = max(t + 0.05, time.monotonic() - 1)
                    if not idle(flood, t, ctx.stop):
                        return
                    if time.monotonic() >= check:
                        check = time.monotonic() + 0.5
                        status, _ = http(sender, "POST", f"/sockjs/000/{sid}/xhr_send", b"[]", "text/plain",
                                         ctx.port)
                        if status == 404:
                            ctx.count("stalled sessions dropped by the server")
                            sid = new_stream(sender)
            finally:
                ctx.drop(flood)
                ctx.drop(sender)
        return run
    return [forever(ctx, one(i)) for i in range(ctx.conns)]


# -- 7. DataSync pending subscriptions ---------------------------------------------------------

def datasync_pending(ctx: Ctx):
    def one() -> None:
        s = ctx.keep(tcp(ctx.port))
        try:
            while not ctx.stop.is_set():
                status, _ = http(s, "GET", "/demos/todos/api", port=ctx.port)
                ctx.count(f"GET /demos/todos/api: {status}")
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


# -- 8. closing drain trickle ------------------------------------------------------------------

def drain_trickle(ctx: Ctx, per_thread: int = 40, open_every: float = 0.25):
    close = ws_frame(8, (1000).to_bytes(2, "big"))

    def run() -> None:
        held: list[socket.socket] = []
        next_open = next_byte = time.monotonic()
        try:
            while not ctx.stop.wait(0.05):
                now = time.monotonic()
                if now >= next_open and len(held) < per_thread:
                    next_open = now + open_every
                    try:
                        s, rest = _ws(ctx)
                        s.sendall(close)
                        buf = bytearray(rest)
                        while not any(op == 8 for op, _ in read_frames(buf)):
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            buf += chunk
                        held.append(s)
                        ctx.count("connections closed, then trickled")
                        ctx.count("still trickling at the end", 1)
                    except (OSError, Refused):
                        ctx.count("connects failed")
                if now >= next_byte:
                    next_byte = now + 1.0
                    for s in list(held):
                        try:  # the server shut its side at its close: only a failed send says it let go
                            s.send(b"\x00")
                        except OSError:
                            ctx.count("trickling sockets closed by the server")
                            ctx.count("still trickling at the end", -1)
                            held.remove(s)
                            ctx.drop(s)
        finally:
            for s in held:
                ctx.drop(s)
    return [run] * ctx.conns


# -- 9. deep nesting (RecursionError path) and the log flood ---------------------------------

def deep_nesting(ctx: Ctx, rate: float = 900.0):
    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth
    texts = ['{"service":"pubsub","message":{"command":"subscribe","params":{"channel":%s},"callId":1}}'
             % nested(300),
             '{"service":"pubsub","message":{"command":"publish","params":{"channel":"a","message":%s},'
             '"callId":2}}' % nested(300),
             '{"service":"messaging","message":{"command":"send","params":{"dest":%s,"body":1},"callId":3}}'
             % nested(600),
             '{"service":"pubsub","message":{"command":"publish","params":{"channel":"a","message":%s},'
             '"callId":4}}' % nested(1100)]
    per_tick = max(1, int(rate / 20))
    batch = b"".join(ws_frame(1, texts[i % len(texts)].encode()) for i in range(per_tick))

    def one() -> None:
        s, _ = _ws(ctx)
        try:
            t = time.monotonic()
            while pump(s, batch, ctx.stop):
                ctx.count("deeply nested messages sent", per_tick)
                t = max(t + 0.05, time.monotonic() - 1)
                if not idle(s, t, ctx.stop):
                    return
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


# -- 10. connection churn, invalid UTF-8 -------------------------------------------------------

def churn(ctx: Ctx):
    hello = ws_frame(1, _msg("pubsub", "publish", {"channel": "nobody", "message": "hi"}))

    def one() -> None:
        s, _ = _ws(ctx)
        try:
            s.sendall(hello)
            ctx.count("connections opened and closed")
        finally:
            ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


def bad_utf8(ctx: Ctx):
    text = b'{"service":"pubsub","message":{"command":"publish","params":{"channel":"\xff\xfe","message":1}}}'
    kinds = {"whole": ws_frame(1, text), "fragmented": ws_frame(1, text[:40], fin=False) + ws_frame(0, text[40:])}

    def one() -> None:
        for kind, data in kinds.items():
            s, rest = _ws(ctx)
            try:
                s.sendall(data)
                s.settimeout(2)
                buf = bytearray(rest)
                answer = "no close in 2 s"
                try:
                    while True:
                        frames = read_frames(buf)
                        closes = [p for op, p in frames if op == 8]
                        if closes:
                            code = int.from_bytes(closes[0][:2], "big") if len(closes[0]) >= 2 else None
                            answer = f"closed {code}"
                            break
                        chunk = s.recv(65536)
                        if not chunk:
                            answer = "connection dropped"
                            break
                        buf += chunk
                except TimeoutError:
                    pass
                ctx.count(f"invalid UTF-8 ({kind}): {answer}")
            finally:
                ctx.drop(s)
    return [forever(ctx, one)] * ctx.conns


ATTACKS = [
    Attack("baseline", "no attack", lambda ctx: []),
    Attack("big", "each hostile connection sends messages of SNORKY_MAX_FRAME_SIZE bytes of nested `[[],[],...]` "
           "JSON back to back (the most objects per byte to parse)", big),
    Attack("big-paced", "61 KB messages of `[[],[],...]` at 95 messages/s per connection (inside the "
           "message rate limit)", big_paced),
    Attack("sockjs-flood", "SockJS-over-WebSocket (/sockjs/000/SID/websocket): each frame carries 10,000 "
           "publish messages, back to back", sockjs_flood),
    Attack("sockjs-send", "10 MiB xhr_send bodies (`[[],[],...]`) and jsonp_send bodies (`d=%%%...`, form "
           "encoded), to the connection's own session and to session ids that do not exist, in turn",
           sockjs_send),
    Attack("retained-state", "each connection (a distinct identity) joins 300 PubSub channels, 300 Chat channels "
           "and 300 Cursors documents with SNORKY_MAX_CHANNEL_SIZE names of `[[],...]`, then creates "
           "SNORKY_MAX_CURSORS cursors whose position and status are each half a max-size frame of `[[],...]`, "
           "then stays connected", retained_state),
    Attack("slowloris", "10 requests whose head never ends: a 1 KB header line every 100 ms each (reopened "
           "when the server closes one)", slowloris),
    Attack("slowloris-500", "500 requests whose head never ends: one header byte every 500 ms each",
           slowloris_many),
    Attack("stalled-stream", "10 SockJS xhr_streaming readers (4 KB receive buffer) that stop reading after "
           "the open frame; each one's session is subscribed to a channel that a /ws connection floods "
           "with 32 KB publishes; when the session is dropped (xhr_send answers 404) a new stalled stream "
           "is opened and the old socket kept", stalled_stream),
    Attack("datasync-pending", "10 keep-alive connections GET the Todos demo's API (/demos/todos/api) in a "
           "loop: each answer authorizes a DataSync subscription nobody acquires (the victim's probe GETs "
           "the same API)", datasync_pending, probe="/demos/todos/api"),
    Attack("drain-trickle", "10 threads each open a WebSocket every 250 ms (up to 40 each), send a close "
           "frame, read the server's close, then send one byte a second on every such socket",
           drain_trickle),
    Attack("deep-nesting", "900 messages/s per connection nested 300 to 1,100 levels deep (PubSub "
           "subscribe/publish, Messaging send): the paths that raised RecursionError and logged tracebacks",
           deep_nesting),
    Attack("churn", "each connection opens a WebSocket, sends one publish and closes, in a loop", churn),
    Attack("bad-utf8", "each connection opens a WebSocket and sends a text frame with invalid UTF-8, "
           "whole or fragmented, then waits for the close (2 s at most)", bad_utf8),
]

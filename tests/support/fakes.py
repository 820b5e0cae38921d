"""A Client that records what services send it (unit tests, no sockets)."""
from __future__ import annotations

import gevent
import gevent.event

from snorky_sync import wire
from snorky_sync.brokers.base import Broker
from snorky_sync.client import Client


class FakeClient(Client):
    """Records every frame; ``messages`` holds the decoded envelopes."""

    __slots__ = ("frames", "_arrived")

    def __init__(self, identity=None, remote_address="fake"):
        super().__init__(None, remote_address, identity)
        self.frames: list[bytes] = []
        self._arrived = gevent.event.Event()

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)
        self._arrived.set()

    def wait_frames(self, count: int, timeout: float = 10) -> list[bytes]:
        """Wait (yielding to the hub) until ``count`` frames are held, at most
        ``timeout`` seconds; AssertionError otherwise."""
        with gevent.Timeout(timeout, AssertionError(f"{len(self.frames)} of {count} frames within {timeout} s")):
            while len(self.frames) < count:
                self._arrived.clear()
                self._arrived.wait()
        return self.frames

    @property
    def messages(self) -> list:
        return [wire.decode(wire.frame_payload(f)) for f in self.frames]

    def pop(self) -> list:
        """The envelopes received since the last pop."""
        out = self.messages
        self.frames.clear()
        return out

    def pop_messages(self, service=None) -> list:
        """Just the ``message`` parts (optionally of one service)."""
        return [e["message"] for e in self.pop() if service is None or e["service"] == service]


def rpc(service, client, command, params=None, call_id=1):
    """Call a command as ``client`` and return the answer message (dict)."""
    client.frames.clear()
    service.process_message_from(client, {"command": command, "params": params or {}, "callId": call_id})
    answers = [m for m in client.pop_messages() if m.get("type") in ("response", "error")]
    assert len(answers) == 1, answers
    return answers[0]


class LinkedBroker(Broker):
    """A distributed broker handing its publishes to its ``peer``'s handlers
    (two "processes" in one test, no Redis); ``published`` lists the topics."""

    distributed = True

    def __init__(self):
        super().__init__()
        self.peer: LinkedBroker | None = None
        self.published: list[str] = []

    def publish(self, topic, data):
        self.published.append(topic)
        handler = self.peer.handlers.get(topic) if self.peer is not None else None
        if handler is not None:  # only where the topic is wanted
            handler(data)


def linked_pair() -> tuple[LinkedBroker, LinkedBroker]:
    """Two linked brokers, each knowing the other as a live peer (what a
    Redis broker knows from heartbeats)."""
    a, b = LinkedBroker(), LinkedBroker()
    a.peer, b.peer = b, a
    a.peers = {b.origin: 0.0}
    b.peers = {a.origin: 0.0}
    return a, b


def app_process(service, broker=None):
    """One process of an app, as ``Runtime.mount`` builds it: its connections,
    a frontend registry with ``service``, and a ``control`` service
    (``.control``, ``.connections``, ``.frontend``, and the service under its name)."""
    import types

    from snorky_sync.endpoints.connections import Connections
    from snorky_sync.registry import ServiceRegistry
    from snorky_sync.services.control import ControlService

    connections = Connections()
    frontend = ServiceRegistry([service], broker=broker)
    control = ControlService("control")
    control.use_runtime(types.SimpleNamespace(connections=connections, registries=[frontend]))
    if broker is not None:
        control.use_broker(broker)
    return types.SimpleNamespace(control=control, connections=connections, frontend=frontend,
                                 **{service.name: service})


def connect_to(proc, identity) -> FakeClient:
    """A connection of ``identity`` to ``proc`` (an :func:`app_process`)."""
    client = FakeClient(identity)
    proc.connections.track(client)
    proc.frontend.client_connected(client)
    return client


def control_call(proc, command, **params):
    """``command`` of ``proc``'s control service, called as the backend does."""
    return rpc(proc.control, FakeClient(), command, params)

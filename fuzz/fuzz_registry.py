"""Coverage-guided fuzzing (atheris) of the wire decoder, the registry and RPC dispatch.

    pip install atheris
    python fuzz/fuzz_registry.py fuzz/corpus -max_total_time=60

Any exception escaping ``process_message_raw`` is a bug (bad input must be
logged and dropped, or answered per protocol.md), and so is an answer that is
not a well-formed envelope.
"""
import logging
import sys

import atheris

with atheris.instrument_imports():
    from snorky_sync import wire
    from snorky_sync.registry import ServiceRegistry
    from snorky_sync.client import Client
    from snorky_sync.services.pubsub import PubSubService

logging.disable(logging.CRITICAL)


class Recorder(Client):
    __slots__ = ("frames",)

    def __init__(self):
        super().__init__(None, "fuzz")
        self.frames = []

    def send_frame(self, frame):
        self.frames.append(frame)


registry = ServiceRegistry()
registry.register_service(PubSubService("pubsub"))
clients = [Recorder(), Recorder()]


def TestOneInput(data: bytes) -> None:
    client = clients[data[0] % 2] if data else clients[0]
    client.frames.clear()
    registry.process_message_raw(client, data[1:])
    for frame in client.frames:
        env = wire.decode(wire.frame_payload(frame))
        assert set(env) == {"service", "message"}, env
        msg = env["message"]
        if msg.get("type") == "error":
            assert isinstance(msg["message"], str) and "callId" in msg
    if len(registry.get_service("pubsub").subscriptions) > 1000:
        for c in clients:
            registry.client_disconnected(c)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()

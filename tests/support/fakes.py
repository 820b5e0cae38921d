"""A Client that records what services send it (unit tests, no sockets)."""
from __future__ import annotations

from snorky_sync import wire
from snorky_sync.client import Client


class FakeClient(Client):
    """Records every frame; ``messages`` holds the decoded envelopes."""

    __slots__ = ("frames",)

    def __init__(self, identity=None, remote_address="fake"):
        super().__init__(None, remote_address, identity)
        self.frames: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

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

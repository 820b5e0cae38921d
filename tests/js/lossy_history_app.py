"""A PubSub service with history whose channel can lose a message on its way
(for tests/js/continuity.test.mjs): ``lose({channel, message})`` gives the
message its offset and keeps it in the history, but delivers it to nobody,
as a worker that missed a publication would; ``renew({channel})`` starts the
channel's history over in a new epoch.  Served at ``/ws`` (``/healthz`` for
the test helper)."""
from flask import Flask

from snorky_sync import ServiceRegistry, Snorky, rpc_command, wire
from snorky_sync.services.pubsub import PubSubService


class LossyPubSub(PubSubService):
    @rpc_command
    def lose(self, req, channel, message):
        with self.lock:
            self.history.append(wire.json_key(channel), {"type": "message", "channel": channel,
                                                         "message": message})

    @rpc_command
    def renew(self, req, channel):
        with self.lock:
            self.history.store.streams.pop(wire.json_key(channel), None)


registry = ServiceRegistry()
registry.register_service(LossyPubSub("pubsub", history_size=100))
app = Flask(__name__)
Snorky(app).websocket("/ws", registry)


@app.get("/healthz")
def healthz():
    return "ok"

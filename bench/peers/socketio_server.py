"""Flask-SocketIO on gevent (gevent-websocket), for the benchmark.

    <peers venv>/bin/python bench/peers/socketio_server.py PORT

The events match bench/loadgen.c's "socketio" dialect:
  subscribe(channel)              join the room, ack'ed
  publish({channel, message})     emit "message" {channel, message} to the
                                  room (the sender is not in it), ack'ed
A publish to a room nobody joined is the RPC workload.  Only 127.0.0.1.
"""
from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import sys  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*", logger=False, engineio_logger=False)


@socketio.on("subscribe")
def subscribe(channel):
    join_room(channel)
    return None


@socketio.on("publish")
def publish(data):
    emit("message", {"channel": data["channel"], "message": data["message"]}, to=data["channel"])
    return None


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = int(sys.argv[1])
    print(f"flask-socketio listening on 127.0.0.1:{port}", flush=True)
    socketio.run(app, host="127.0.0.1", port=port, log_output=False)

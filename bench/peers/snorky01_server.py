"""Snorky 0.1 (PyPI snorky==0.1.0a4) on Tornado 6, for the benchmark.

    <peers venv>/bin/python bench/peers/snorky01_server.py PORT

Snorky 0.1 was written for Tornado < 5 and Python 2/3.4; two things it
imports are gone from Tornado 6, so this runner provides them before
importing snorky (its installed files are not edited):

  * ``tornado.web.asynchronous`` (removed in Tornado 6; used by
    snorky.request_handlers.http): a no-op decorator;
  * ``sockjs.tornado`` (the optional SockJS transport, never installed):
    a stub module, so ``import snorky.request_handlers`` works either way.

PubSubService is registered as "pubsub" and CursorsService as "cursors", and
the WebSocket is at /ws, like snorky_sync's default app.  Only 127.0.0.1 is
bound.

Snorky 0.1 has no authentication of its own: a connection's identity is the
``identity`` attribute of its ``snorky.client.Client`` (None until the
application sets it), which ChatService and CursorsService read.  The
application gives it one in a subclass of ``SnorkyWebSocketHandler`` before
the registry hears of the connection (``open()``); here, from the ``token``
query parameter taken verbatim (the benchmark hands out one per client; a
real application would check a session or a signed token there).
"""
import sys
import types

import tornado.web

if not hasattr(tornado.web, "asynchronous"):
    tornado.web.asynchronous = lambda method: method
if "sockjs.tornado" not in sys.modules:
    sockjs = types.ModuleType("sockjs")
    sockjs.tornado = types.ModuleType("sockjs.tornado")
    sockjs.tornado.SockJSRouter = sockjs.tornado.SockJSConnection = object
    sys.modules["sockjs"], sys.modules["sockjs.tornado"] = sockjs, sockjs.tornado

import asyncio  # noqa: E402
import logging  # noqa: E402

import tornado.ioloop  # noqa: E402
from snorky import ServiceRegistry  # noqa: E402
from snorky.request_handlers.websocket import SnorkyWebSocketHandler  # noqa: E402
from snorky.services.cursors import CursorsService  # noqa: E402
from snorky.services.pubsub import PubSubService  # noqa: E402


class IdentifiedWebSocketHandler(SnorkyWebSocketHandler):
    """0.1's handler, with ``?token=`` as the connection's identity."""

    def open(self):
        self.client.identity = self.get_argument("token", None)
        super().open()


async def main(port: int) -> None:
    logging.getLogger("snorky").setLevel(logging.ERROR)
    registry = ServiceRegistry([PubSubService("pubsub"), CursorsService("cursors")])
    app = tornado.web.Application([IdentifiedWebSocketHandler.get_route(registry, "/ws")])
    app.listen(port, address="127.0.0.1", backlog=4096)
    print(f"snorky 0.1 listening on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""An RPC service: a default parameter, an RPCError and an asynchronous command.

    python examples/calculator.py
    # {"service": "calc", "message": {"command": "add", "params": {"a": 2}, "callId": 1}}
    # -> {"service": "calc", "message": {"type": "response", "callId": 1, "data": 2}}
"""
import os

import gevent
from flask import Flask

from snorky_sync import RPCError, RPCService, ServiceRegistry, Snorky, rpc_asynchronous, rpc_command, serve


class CalculatorService(RPCService):
    @rpc_command
    def add(self, req, a, b=0):
        """``b`` is optional: {"a": 2} answers 2."""
        return a + b

    @rpc_command
    def divide(self, req, a, b):
        if b == 0:
            raise RPCError("Division by zero")  # the client gets exactly this text
        return a / b

    @rpc_asynchronous
    def slow_square(self, req, x, delay=0.1):
        """Answered later from another greenlet; the connection keeps serving meanwhile."""
        def work():
            gevent.sleep(delay)  # stands for a slow computation or I/O
            if not isinstance(x, (int, float)):
                raise RPCError("x must be a number")
            return x * x  # req.spawn answers with it (an exception: Internal error)
        req.spawn(work)


registry = ServiceRegistry()
registry.register_service(CalculatorService("calc"))
app = Flask(__name__)
Snorky(app).websocket("/ws", registry)

if __name__ == "__main__":
    print("Calculator running...", flush=True)
    serve(app, port=int(os.environ.get("PORT", 8002)))

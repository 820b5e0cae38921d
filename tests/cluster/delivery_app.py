"""The server of tests/cluster/test_delivery_chaos.py: the default app
(``create_app``, every SNORKY_* setting) plus a test-only ``worker`` service
that tells a connection which worker process it reached."""
import os

from snorky_sync import RPCService, rpc_command
from snorky_sync.app import create_app


class Worker(RPCService):
    @rpc_command
    def pid(self, req):
        return os.getpid()


app = create_app()
app.extensions["snorky_sync.registries"]["frontend"].register_service(Worker("worker"))

# Snorky 0.1's doc/examples/simple_rpc.py; only the import prefix changed.
import math
from snorky_sync.services.base import RPCService, rpc_command

class CalculatorService(RPCService):
    @rpc_command
    def sum(self, req, number1, number2):
        return number1 + number2

    @rpc_command
    def log(self, req, number, base=2.718):
        return math.log(number, base)

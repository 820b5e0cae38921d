# Snorky 0.1's doc/examples/echo_service.py; only the import prefix changed.
from snorky_sync.services.base import Service

class EchoService(Service):
    def process_message_from(self, client, msg):
        self.send_message_to(client, msg)

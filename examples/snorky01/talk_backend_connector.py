# Snorky 0.1's doc/examples/talk_backend_connector.py; the import prefix changed,
# the URL and key come from the environment.
import os
from snorky_sync.backend import SnorkyBackend, SnorkyHTTPTransport, SnorkyError

backend_http = SnorkyHTTPTransport(os.environ.get("SNORKY_BACKEND_URL", "http://localhost:8001/backend"),
                                   key=os.environ.get("SNORKY_API_KEY", "swordfish"))
backend = SnorkyBackend(backend_http)

response = backend.call("pubsub_backend", "publish",
                        channel="announcements", message="Hello World")
print("The service replied: %r" % (response,))

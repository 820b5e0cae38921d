# Snorky 0.1's doc/examples/talk_backend.py followed by talk_backend_response.py
# (the documentation shows them as one program); unchanged but for the URL and
# key, which come from the environment, and one fix: 0.1's fragment decoded an
# undefined name ("response") where it meant response_obj.
import json
import os
import requests

URL = os.environ.get("SNORKY_BACKEND_URL", "http://localhost:8001/backend")
KEY = os.environ.get("SNORKY_API_KEY", "swordfish")

# Publish "Hello world"
response_obj = requests.post(URL, headers={
    "X-Backend-Key": KEY,
    "Content-Type": "application/json",
    "Accept": "application/json",
}, data=json.dumps({
    "service": "pubsub_backend",
    "message": {
        "command": "publish",
        "params": {
            "channel": "announcements",
            "message": "Hello World",
        }
    }
}).encode("UTF-8"))

if response_obj.status_code != 200:
    print("Non service related error")
else:
    response = json.loads(response_obj.content.decode("UTF-8"))
    # Remove the service envelop
    response = response["message"]
    if response["type"] == "response":
        print("The service replied: " + repr(response["data"]))
    else:
        print("The service signaled an error: " + response["message"])

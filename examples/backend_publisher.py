"""A trusted program publishing through the private backend endpoint.

    SNORKY_API_KEY=some-long-secret-key-123 python examples/backend_publisher.py "Hello"
"""
import json
import os
import sys
import urllib.request


def publish(url: str, api_key: str, service: str, channel, message):
    body = json.dumps({"service": service, "message": {
        "command": "publish", "params": {"channel": channel, "message": message}, "callId": 1}})
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "X-Backend-Key": api_key})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


if __name__ == "__main__":
    url = os.environ.get("BACKEND_URL", "http://127.0.0.1:8003/backend")
    answer = publish(url, os.environ["SNORKY_API_KEY"], "news_backend", "headlines",
                     sys.argv[1] if len(sys.argv) > 1 else "Hello from the backend")
    print(json.dumps(answer))
    sys.exit(0 if answer["message"]["type"] == "response" else 1)

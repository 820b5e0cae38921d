"""Adding snorky_sync to a Flask app that already has routes, templates and a session.

The app keeps running the way it did (here: its own ``app.run``-style entry
point replaced by ``serve``; under gunicorn nothing changes but the worker
class).  Three lines add the endpoint.

    python examples/existing_flask_app.py
"""
import os

from flask import Flask, render_template_string, session

from snorky_sync import ServiceRegistry, Snorky, serve
from snorky_sync.services.pubsub import PubSubService

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "dev-only-secret")

PAGE = "<h1>Hello {{ name }}</h1><p>Visits: {{ visits }}</p>"


@app.route("/")
def home():
    session["visits"] = session.get("visits", 0) + 1
    return render_template_string(PAGE, name="existing app", visits=session["visits"])


# --- snorky_sync: these lines are all it takes ---
registry = ServiceRegistry()
registry.register_service(PubSubService("pubsub"))
Snorky(app).websocket("/realtime", registry)
# ---

if __name__ == "__main__":
    serve(app, port=int(os.environ.get("PORT", 8002)))

"""Configuration the Flask way, on a real server: ``SNORKY_*`` from each app's
``app.config``, one runtime per app, two apps in one process.

The process serves two Flask apps through werkzeug's DispatcherMiddleware
(``/`` and ``/b``), each with its own Snorky, registry and
``app.config["SNORKY_MAX_CONNECTIONS"]`` (1 and 3); the environment says
nothing.  Each app's limit holds for its own connections only, and each
``/healthz`` counts its own.  App ``a``'s extension is made with ``Snorky()``
before its config is set and attached later with ``init_app``: the config at
``init_app`` is what counts.
"""
import textwrap
import time

import pytest
import requests

from support.servers import ServerProcess
from support.wsclient import SnorkyTestClient, refusal

APP = textwrap.dedent('''
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from snorky_sync import ServiceRegistry, Snorky
    from snorky_sync.services.pubsub import PubSubService

    snorky_a = Snorky()                       # made before the app's config is set
    registry_a = ServiceRegistry([PubSubService("pubsub")])
    snorky_a.websocket("/ws", registry_a)
    snorky_a.health("/healthz")

    a = Flask("a")
    a.config["SNORKY_MAX_CONNECTIONS"] = 1
    snorky_a.init_app(a)                      # read now

    b = Flask("b")
    b.config.from_mapping(SNORKY_MAX_CONNECTIONS="3")
    snorky_b = Snorky(b)
    snorky_b.websocket("/ws", ServiceRegistry([PubSubService("pubsub")]))
    snorky_b.health("/healthz")

    app = DispatcherMiddleware(a, {"/b": b})
''')


@pytest.fixture(scope="module", params=["embedded", "gunicorn-gevent", "gunicorn-geventwebsocket"])
def two_apps(request, tmp_path_factory):
    where = tmp_path_factory.mktemp("two_apps")
    (where / "twoapps.py").write_text(APP)
    srv = ServerProcess(request.param, app="twoapps:app", cwd=where,
                        env={"SNORKY_MAX_CONNECTIONS": ""})
    yield srv
    srv.stop()


def refused(srv, path: str) -> int | None:
    """The refusal of one more connection at ``path``: its HTTP status (503), or
    the close code right after the upgrade (gevent-websocket's worker: 1008);
    None if it was let in."""
    return refusal(srv.ws_url + path)


def connections(srv, prefix: str, expected: int) -> int:
    """/healthz's count, once it shows ``expected`` (a closed socket is
    counted until the server has seen it close), or its last answer."""
    deadline = time.monotonic() + 10
    while True:
        n = requests.get(f"{srv.url}{prefix}/healthz", timeout=10).json()["connections"]
        if n == expected or time.monotonic() > deadline:
            return n
        time.sleep(0.05)  # polling an HTTP count: no event to wait on from outside


def test_each_app_has_its_own_config_and_connections(two_apps):
    srv = two_apps
    expected = 1008 if srv.mode == "gunicorn-geventwebsocket" else 503
    held = [SnorkyTestClient(srv.ws_url + "/ws")]
    try:
        assert held[0].ok("pubsub", "subscribe", {"channel": "x"}) is None
        # app a: SNORKY_MAX_CONNECTIONS = 1 from app.config, set after Snorky() was made
        assert refused(srv, "/ws") == expected
        # app b: 3 of its own, whatever a holds
        for _ in range(3):
            held.append(SnorkyTestClient(srv.ws_url + "/b/ws"))
            assert held[-1].ok("pubsub", "subscribe", {"channel": "x"}) is None
        assert refused(srv, "/b/ws") == expected
        assert connections(srv, "", 1) == 1
        assert connections(srv, "/b", 3) == 3
    finally:
        for c in held:
            c.close()
    # a's slot frees once its connection is gone; b's are not a's
    assert connections(srv, "", 0) == 0
    again = SnorkyTestClient(srv.ws_url + "/ws")
    assert again.ok("pubsub", "subscribe", {"channel": "y"}) is None
    again.close()


SERVER_APP = textwrap.dedent('''
    import os
    from flask import Flask
    from snorky_sync import ServiceRegistry, Snorky
    from snorky_sync.services.pubsub import PubSubService

    app = Flask("served")
    app.config["SNORKY_PORT"] = int(os.environ["APP_CONFIG_PORT"])
    Snorky(app).websocket("/ws", ServiceRegistry([PubSubService("pubsub")]))
''')


def test_a_server_setting_gunicorn_is_not_running_with_stops_it(tmp_path):
    """gunicorn binds before it loads the app: SNORKY_PORT in app.config is not in
    effect there.  Under the shipped config gunicorn stops and says so, instead of
    serving on another port than the app was told."""
    import os
    import subprocess
    import sys

    from support.servers import free_port

    (tmp_path / "served.py").write_text(SERVER_APP)
    port = free_port()
    gunicorn = ["-m", "gunicorn", "--no-control-socket", "-c", "python:snorky_sync.gunicorn_conf",
                "served:app"]
    env = {**os.environ, "SNORKY_PORT": str(port), "APP_CONFIG_PORT": str(port + 1)}
    out = subprocess.run([sys.executable, *gunicorn], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert ("app.config sets SNORKY_PORT=%d (gunicorn runs with %d): gunicorn reads these from "
            "the environment or its command line" % (port + 1, port)) in out.stderr, out.stderr[-2000:]
    assert "Worker failed to boot" in out.stderr
    # the same value as gunicorn's is in effect: it serves
    srv = ServerProcess(args=gunicorn, cwd=tmp_path, port=port, env={"APP_CONFIG_PORT": str(port)})
    try:
        client = SnorkyTestClient(srv.ws_url + "/ws")
        assert client.ok("pubsub", "subscribe", {"channel": "x"}) is None
        client.close()
    finally:
        srv.stop()

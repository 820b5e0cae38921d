"""Where the operator page is served (issue #24 item 5): next to a backend with
a ControlService only, its headers, its files shipped in the wheel.  The page
itself in Chromium: tests/browser/test_operator_page.py."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from flask import Flask

from snorky_sync import ServiceRegistry, Snorky
from snorky_sync.app import create_app
from snorky_sync.services.control import ControlService
from snorky_sync.services.pubsub import PubSubBackend, PubSubService
from snorky_sync.settings import Settings

KEY = "operator-unit-key-0123456789"


def app_with(registry, **options):
    app = Flask(__name__)
    Snorky(app).backend("/api/backend", registry, api_key=KEY, **options)
    return app.test_client()


def test_served_next_to_a_backend_with_a_control_service():
    client = app_with(ServiceRegistry([ControlService("ops")]))
    page = client.get("/api/backend/operator")
    assert page.status_code == 200
    # where to call, which service: attributes of the page, nothing else
    assert 'data-backend="/api/backend"' in page.text and 'data-control="ops"' in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    for name, mime in (("operator.js", "text/javascript"), ("operator.css", "text/css")):
        asset = client.get(f"/api/backend/operator/{name}")
        assert asset.status_code == 200 and asset.mimetype == mime
        assert "frame-ancestors 'none'" in asset.headers["Content-Security-Policy"]
    assert client.get("/api/backend/operator/index.html").status_code == 404
    assert client.get("/api/backend/operator/../app.py").status_code == 404


def test_off_without_a_control_service_or_when_asked():
    pubsub = PubSubService("pubsub")
    assert app_with(ServiceRegistry([PubSubBackend("b", pubsub)])).get(
        "/api/backend/operator").status_code == 404
    assert app_with(ServiceRegistry([ControlService()]), operator=False).get(
        "/api/backend/operator").status_code == 404
    with pytest.raises(ValueError, match="needs a ControlService"):
        app_with(ServiceRegistry([PubSubBackend("b", pubsub)]), operator=True)
    with pytest.raises(TypeError):
        app_with(ServiceRegistry([ControlService()]), operator="yes")


def test_the_default_app_serves_it_only_with_a_backend():
    with_key = create_app(Settings(api_key=KEY)).test_client()
    assert with_key.get("/backend/operator").status_code == 200
    without = create_app(Settings(api_key=None)).test_client()
    assert without.get("/backend/operator").status_code == 404
    assert without.get("/backend/operator/operator.js").status_code == 404


def test_only_port_applies_to_the_page():
    client = app_with(ServiceRegistry([ControlService()]), only_port=1)
    assert client.get("/api/backend/operator").status_code == 404  # not the backend's port
    assert client.get("/api/backend/operator/operator.js").status_code == 404


def test_the_wheel_ships_the_page(tmp_path):
    """A wheel built from this tree holds the page (pyproject's package-data);
    built from a copy: pip's in-tree build would leave build/ in the repository."""
    root = Path(__file__).resolve().parents[2]
    clone = tmp_path / "clone"
    shutil.copytree(root / "snorky_sync", clone / "snorky_sync", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, clone / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
                    "-w", str(tmp_path / "dist"), str(clone)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("snorky_sync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"snorky_sync/operator/index.html", "snorky_sync/operator/operator.js",
            "snorky_sync/operator/operator.css", "snorky_sync/endpoints/operator_http.py"} <= names

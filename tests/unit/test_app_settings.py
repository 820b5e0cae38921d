"""Settings from the environment and the default app's pluggable dealers."""
import pytest

from snorky_sync.app import create_app, load_dealers
from snorky_sync.services.datasync import SimpleDealer
from snorky_sync.settings import Settings


class ByColor(SimpleDealer):
    name = "byColor"
    model = "Player"

    def get_key_for_model(self, data):
        return data["color"]


def more_dealers():
    return [ByColorTwo()]


class ByColorTwo(ByColor):
    name = "byColor2"


def test_settings_from_env():
    s = Settings.from_env({"SNORKY_PORT": "9000", "SNORKY_PING_INTERVAL": "2.5",
                           "SNORKY_ALLOWED_ORIGINS": "https://a, https://b", "SNORKY_ACCESS_LOG": "yes",
                           "SNORKY_API_KEY": "k" * 20})
    assert (s.port, s.ping_interval, s.allowed_origins, s.access_log, s.api_key) == (
        9000, 2.5, ("https://a", "https://b"), True, "k" * 20)
    assert Settings.from_env({}).port == 8002
    with pytest.raises(ValueError):
        Settings.from_env({"SNORKY_PORT": "not a number"})


def test_load_dealers_from_import_paths():
    dealers = load_dealers(f"{__name__}:ByColor, {__name__}:more_dealers")
    assert [type(d) if not isinstance(d, type) else d for d in dealers] == [ByColor, ByColorTwo]
    assert load_dealers(None) == [] and load_dealers("") == []
    with pytest.raises(ValueError):
        load_dealers("no_colon_here")
    with pytest.raises(ImportError):
        load_dealers("no.such.module:X")


def test_default_app_serves_every_service():
    app = create_app(Settings(api_key="k" * 20, datasync_dealers=f"{__name__}:ByColor"))
    regs = app.extensions["snorky_sync.registries"]
    assert {"pubsub", "datasync"} <= set(regs["frontend"].services)
    assert {"pubsub_backend", "datasync_backend"} <= set(regs["backend"].services)
    assert "byColor" in regs["frontend"].get_service("datasync").dealers_by_name

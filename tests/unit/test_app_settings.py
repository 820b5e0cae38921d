"""Settings from the environment and the default app's pluggable dealers."""
import re

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


@pytest.mark.parametrize("name, value, wanted", [
    ("SNORKY_PING_INTERVAL", "0", "above 0"),          # the pinger dropped every idle connection
    ("SNORKY_MAX_CONNECTIONS", "-5", "above 0"),
    ("SNORKY_SOCKJS_HEARTBEAT", "-1", "above 0"),
    ("SNORKY_RATE_LIMIT", "-1", "0 or more"),           # 0 is off; below it means nothing
    ("SNORKY_PUBSUB_HISTORY_SIZE", "-10", "0 or more"),
])
def test_settings_out_of_range_are_refused(name, value, wanted):
    with pytest.raises(ValueError, match=re.escape(f"{name}={value!r} (from the environment) is out of range: {wanted}")):
        Settings.from_env({name: value})
    with pytest.raises(ValueError, match=re.escape(f"(from app.config) is out of range: {wanted}")):
        Settings.from_config({name: value}, {})
    field_name = name.removeprefix("SNORKY_").lower()
    with pytest.raises(ValueError, match=re.escape(f"Settings({field_name}=") + ".*" + re.escape(wanted)):
        Settings(**{field_name: float(value) if "." in value or field_name.endswith(("interval", "heartbeat"))
                    else int(value)})


def test_zero_stays_allowed_where_it_means_off_or_any():
    s = Settings.from_env({"SNORKY_RATE_LIMIT": "0", "SNORKY_PORT": "0", "SNORKY_WRITE_TIMEOUT": "0"})
    assert (s.rate_limit, s.port, s.write_timeout) == (0, 0, 0)


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
    assert set(regs["frontend"].services) == {"pubsub", "chat", "cursors", "messaging", "datasync"}
    assert set(regs["backend"].services) == {"control", "pubsub_backend", "datasync_backend"}
    assert "byColor" in regs["frontend"].get_service("datasync").dealers_by_name


def test_json_log_lines_carry_connection_fields(capsys):
    import json
    import logging

    from snorky_sync.logs import configure_logging
    configure_logging("INFO", "json")
    try:
        logging.getLogger("snorky_sync.test").warning("slow consumer %s", "1.2.3.4:5",
                                                      extra={"conn": 7, "remote": "1.2.3.4:5"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "slow consumer 1.2.3.4:5"
        assert (record["conn"], record["remote"], record["level"]) == (7, "1.2.3.4:5", "WARNING")
    finally:
        logging.getLogger().handlers[:] = []

"""Snorky(app) the Flask way: settings from app.config, a Runtime per app, loud mistakes."""
import pytest
from flask import Flask

from snorky_sync import ServiceRegistry, Snorky
from snorky_sync.brokers import LocalBroker
from snorky_sync.runtime import Runtime
from snorky_sync.services.pubsub import PubSubService
from snorky_sync.settings import Settings


def make_app(**config) -> Flask:
    app = Flask("t")
    app.config.update(config)
    return app


def test_settings_come_from_app_config_then_the_environment(monkeypatch):
    monkeypatch.setenv("SNORKY_RATE_LIMIT", "7")
    monkeypatch.setenv("SNORKY_MAX_CONNECTIONS", "9")
    app = make_app(SNORKY_MAX_CONNECTIONS=3, SNORKY_ALLOWED_ORIGINS=["https://a.example"],
                   SNORKY_SOCKJS_COOKIE_NEEDED="yes", SNORKY_MAX_OUTBOUND_MEMORY=1 << 20)
    snorky = Snorky(app)
    s = Snorky.runtime(app).settings
    assert s.max_connections == 3          # app.config wins
    assert s.rate_limit == 7.0             # the environment fills in
    assert s.allowed_origins == ("https://a.example",)
    assert s.sockjs_cookie_needed is True
    assert snorky.settings is s
    runtime = Snorky.runtime(app)
    assert runtime.outbound.limit == 1 << 20  # the app's own budget of outbound bytes


def test_config_is_read_when_the_app_is_attached_not_when_the_extension_is_made():
    snorky = Snorky()
    pubsub = PubSubService("pubsub")
    snorky.websocket("/ws", ServiceRegistry([pubsub]))   # declared before any app
    app = make_app()
    app.config["SNORKY_MAX_SUBSCRIPTIONS"] = 5
    snorky.init_app(app)
    assert Snorky.runtime(app).settings.max_subscriptions == 5
    assert pubsub.max_subscriptions == 5  # configured from that app's settings
    assert "/ws" in {r.rule for r in app.url_map.iter_rules()}


@pytest.mark.parametrize("key, value, message", [
    ("SNORKY_REDIS_ULR", "redis://x", "did you mean SNORKY_REDIS_URL"),
    ("SNORKY_MAX_CONNECTIONS", "many", "SNORKY_MAX_CONNECTIONS='many' (from app.config) is not a valid int"),
    ("SNORKY_DEMOS", "maybe", "is not a valid bool"),
    ("SNORKY_PING_INTERVAL", [1], "is not a valid float"),
])
def test_a_setting_that_cannot_be_in_effect_fails_at_init_app(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Snorky(make_app(**{key: value}))


def test_the_environment_is_checked_too():
    with pytest.raises(ValueError, match="SNORKY_PORT='x' .from the environment. is not a valid int"):
        Settings.from_env({"SNORKY_PORT": "x"})


def test_one_extension_serves_several_apps_each_with_its_own_runtime():
    snorky = Snorky()
    snorky.health("/healthz")
    a, b = make_app(SNORKY_MAX_CONNECTIONS=1), make_app(SNORKY_MAX_CONNECTIONS=2)
    snorky.init_app(a)
    snorky.init_app(b)
    ra, rb = Snorky.runtime(a), Snorky.runtime(b)
    assert ra is not rb
    assert (ra.settings.max_connections, rb.settings.max_connections) == (1, 2)
    assert ra.connections is not rb.connections and ra.outbound is not rb.outbound
    assert ra.extension is rb.extension is snorky
    # routes declared after both are attached reach both
    snorky.websocket("/ws", ServiceRegistry([PubSubService("pubsub")]))
    for app in (a, b):
        assert {"/healthz", "/ws"} <= {r.rule for r in app.url_map.iter_rules()}
        assert app.test_client().get("/healthz").json["connections"] == 0
    # a single-app shortcut would have to pick one: it says what to use instead
    with pytest.raises(RuntimeError, match=r"Snorky.runtime\(app\).broker"):
        snorky.broker  # noqa: B018


def test_an_app_takes_one_extension():
    app = make_app()
    Snorky(app)
    with pytest.raises(RuntimeError, match="has a snorky_sync extension already"):
        Snorky(app)


def test_runtime_of_an_app_without_the_extension_says_how():
    with pytest.raises(RuntimeError, match=r"Snorky\(app\) or snorky.init_app\(app\) first"):
        Runtime.of(make_app())


def test_a_registry_with_a_local_broker_under_a_redis_url_is_named(caplog):
    # kept (a deliberate choice), but it serves one process while SNORKY_REDIS_URL says many
    snorky = Snorky(make_app(SNORKY_REDIS_URL="redis://127.0.0.1:1/0"))
    registry = ServiceRegistry([PubSubService("pubsub")], broker=LocalBroker())
    snorky.websocket("/ws", registry)
    assert type(registry.broker) is LocalBroker
    assert "has a LocalBroker of its own: its services serve this process only" in caplog.text


def test_explicit_settings_are_every_apps():
    settings = Settings(max_connections=4)
    snorky = Snorky(settings=settings)
    app = make_app(SNORKY_MAX_CONNECTIONS=99)
    snorky.init_app(app)
    assert Snorky.runtime(app).settings is settings
    with pytest.raises(TypeError, match="settings is a snorky_sync.settings.Settings"):
        Snorky(settings={"max_connections": 1})


def test_a_setting_only_gunicorn_reads_is_refused_in_app_config():
    with pytest.raises(ValueError, match="SNORKY_BIND: read by gunicorn from the environment"):
        Snorky(make_app(SNORKY_BIND="0.0.0.0:80"))


def test_settings_remember_what_came_from_app_config(monkeypatch):
    monkeypatch.setenv("SNORKY_WORKERS", "4")
    app = make_app(SNORKY_PORT=9000)
    Snorky(app)
    assert Snorky.runtime(app).settings._from_app == {"port"}


def test_a_setting_only_the_default_app_reads_is_refused_in_app_config():
    # it would do nothing in this app: the error says what does
    with pytest.raises(ValueError, match=r"SNORKY_API_KEY is read only by the default app .* "
                                         r"snorky.backend\(path, registry, api_key=...\)"):
        Snorky(make_app(SNORKY_API_KEY="k" * 20))
    with pytest.raises(ValueError, match=r"SNORKY_PUBSUB_HISTORY_SIZE .* PubSubService\(name, history_size"):
        Snorky(make_app(SNORKY_PUBSUB_HISTORY_SIZE=10))


def test_the_default_app_still_takes_its_settings(monkeypatch):
    from snorky_sync.app import create_app

    monkeypatch.setenv("SNORKY_API_KEY", "k" * 20)
    monkeypatch.setenv("SNORKY_PUBSUB_HISTORY_SIZE", "5")
    app = create_app()
    assert Snorky.runtime(app).settings.api_key == "k" * 20

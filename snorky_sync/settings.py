"""Settings from ``SNORKY_*`` environment variables, with safe defaults.

Every variable is listed in the settings table of docs/deployment.md (generated from this class).
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

__all__ = ["Settings", "MIN_API_KEY_LENGTH", "ENVIRONMENT_ONLY", "DEFAULT_APP_ONLY"]

MIN_API_KEY_LENGTH = 16
#: settings only the default app (snorky_sync.app.create_app) reads, and where a
#: mounted app says the same thing instead
DEFAULT_APP_ONLY = {
    "api_key": "snorky.backend(path, registry, api_key=...) and snorky.metrics(api_key=...)",
    "token_secret": "snorky.websocket(path, registry, authenticate=ConnectionTokens(secret))",
    "token_max_age": "ConnectionTokens(secret, max_age=...)",
    "pubsub_history_size": "PubSubService(name, history_size=...)",
    "pubsub_history_ttl": "PubSubService(name, history_ttl=...)",
    "chat_history_size": "ChatService(name, history_size=...)",
    "chat_history_ttl": "ChatService(name, history_ttl=...)",
    "pubsub_presence": "PubSubService(name, presence=True)",
    "chat_presence": "ChatService(name, presence=True)",
    "namespaces": "PubSubService(name, namespaces=Namespaces(...)) and ChatService(name, namespaces=...)",
    "datasync_dealers": "DataSyncService(name, dealers)",
    "datasync_timeout": "DataSyncBackend(name, frontend, timeout_interval=...)",
    "datasync_resume_window": "DataSyncService(name, dealers, resume_window=...)",
    "log_level": "snorky_sync.configure_logging(level)",
    "log_format": "snorky_sync.configure_logging(level, json=True)",
    "demo_database_url": "(the demos belong to the default app)",
    "demo_api_rate": "(the demos belong to the default app)",
}

#: settings only gunicorn reads (snorky_sync.gunicorn_conf), from the environment
ENVIRONMENT_ONLY = ("SNORKY_BIND", "SNORKY_GRACEFUL_TIMEOUT")
_LISTS = ("allowed_origins", "public_origin", "trusted_proxies", "backend_only_channels")
#: booleans whose default None means "the app decides"
_OPTIONAL_BOOLS = ("personal_channels",)


def _split(value: str) -> tuple[str, ...] | None:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    return items or None


@dataclass
class Settings:
    """All settings; :meth:`from_env` reads them from the environment."""

    host: str = "127.0.0.1"                 # SNORKY_HOST
    port: int = 8002                        # SNORKY_PORT
    api_key: str | None = None              # SNORKY_API_KEY (backend off when unset)
    backend_host: str = "127.0.0.1"         # SNORKY_BACKEND_HOST (with SNORKY_BACKEND_PORT)
    backend_port: int = 0                   # SNORKY_BACKEND_PORT (0: backend on the main port)
    ping_interval: float = 90.0             # SNORKY_PING_INTERVAL (seconds)
    max_frame_size: int = 64 * 1024         # SNORKY_MAX_FRAME_SIZE (bytes; largest incoming message, larger: close 1009; Snorky 0.1 took 10 MiB)
    max_queue_frames: int = 10000           # SNORKY_MAX_QUEUE_FRAMES
    max_queue_bytes: int = 1024 * 1024      # SNORKY_MAX_QUEUE_BYTES (backlog behind the frame being written)
    write_timeout: float = 5.0              # SNORKY_WRITE_TIMEOUT (seconds a write may make no progress; 0: off)
    max_outbound_memory: int = 0            # SNORKY_MAX_OUTBOUND_MEMORY (bytes owed to all connections of an app in a process; 0: a quarter of RAM / workers)
    socket_sndbuf: int = 0                  # SNORKY_SOCKET_SNDBUF (bytes of kernel send buffer per socket; 0: OS default)
    allowed_origins: tuple[str, ...] | None = None  # SNORKY_ALLOWED_ORIGINS (comma-separated)
    public_origin: tuple[str, ...] | None = None    # SNORKY_PUBLIC_ORIGIN (this server's origin(s) as browsers see them, behind a proxy)
    connect_rate: float = 1000.0            # SNORKY_CONNECT_RATE (new WebSockets/s per process; 0: off)
    connect_burst: float = 2000.0           # SNORKY_CONNECT_BURST
    connect_rate_per_ip: float = 0.0        # SNORKY_CONNECT_RATE_PER_IP (new WebSockets/s per client address; 0: off)
    connect_burst_per_ip: float = 100.0     # SNORKY_CONNECT_BURST_PER_IP
    trusted_proxies: tuple[str, ...] | None = None  # SNORKY_TRUSTED_PROXIES (addresses whose X-Forwarded-For is believed)
    rate_limit: float = 1000.0              # SNORKY_RATE_LIMIT (messages/s per connection, 0: off)
    rate_burst: float = 2000.0              # SNORKY_RATE_BURST
    byte_rate_limit: float = 256 * 1024     # SNORKY_BYTE_RATE_LIMIT (bytes/s of messages per connection; over it the connection is read slower, not closed; 0: off)
    byte_rate_burst: float = 1024 * 1024    # SNORKY_BYTE_RATE_BURST (bytes)
    max_connections: int = 20000            # SNORKY_MAX_CONNECTIONS (per process)
    max_connections_per_identity: int = 100  # SNORKY_MAX_CONNECTIONS_PER_IDENTITY
    max_subscriptions: int = 200            # SNORKY_MAX_SUBSCRIPTIONS (per connection and service: pubsub channels, chat channels, cursor documents, datasync subscriptions)
    max_cursors: int = 16                   # SNORKY_MAX_CURSORS (per connection)
    max_cursor_size: int = 4096             # SNORKY_MAX_CURSOR_SIZE (bytes of JSON of one cursor's private handle, position and status together)
    max_chat_message_size: int = 64 * 1024  # SNORKY_MAX_CHAT_MESSAGE_SIZE (bytes of JSON of a chat message's body)
    max_pending_subscriptions: int = 10000  # SNORKY_MAX_PENDING_SUBSCRIPTIONS (unacquired DataSync authorizations per process)
    max_pending_per_requester: int = 100    # SNORKY_MAX_PENDING_PER_REQUESTER (unacquired DataSync authorizations per requester the web app names; its oldest go first)
    max_channel_size: int = 1024            # SNORKY_MAX_CHANNEL_SIZE (bytes of JSON per channel / document name)
    backend_only_channels: tuple[str, ...] | None = None  # SNORKY_BACKEND_ONLY_CHANNELS (comma-separated PubSub channel names or globs only the backend may publish to; the default app: news)
    personal_channels: bool | None = None   # SNORKY_PERSONAL_CHANNELS (a PubSub or Chat channel named with `#` and identities, `dialog#alice,bob`, is readable only by them; unset: on in the default app, off in an app's own services; 1 or 0: on or off in every PubSub and Chat service whose code does not say)
    pubsub_history_size: int = 0            # SNORKY_PUBSUB_HISTORY_SIZE (messages kept per PubSub channel for recovery; 0: off, 0.1's frames)
    pubsub_history_ttl: float = 300.0       # SNORKY_PUBSUB_HISTORY_TTL (seconds a channel's history lives after its last message)
    chat_history_size: int = 0              # SNORKY_CHAT_HISTORY_SIZE (chat messages kept per channel; 0: off)
    chat_history_ttl: float = 300.0         # SNORKY_CHAT_HISTORY_TTL (seconds)
    namespaces: str | None = None           # SNORKY_NAMESPACES (JSON: the default app's PubSub and Chat channel namespaces, `{"public": {"publish": "authenticated"}, "admin": {"subscribe": "nobody"}}`: a channel `public:news` follows namespace public's options subscribe, publish (anyone, authenticated, nobody; publish also subscribers), history_size (with the service's history on), personal_channels, recent (a latest-value channel: every subscribe gets its last n messages; with history on), presence (true: its channels keep presence with metadata, false: none; unset: SNORKY_PUBSUB_PRESENCE / SNORKY_CHAT_PRESENCE); the key `*` gives the other channels' options; unset: every channel open. docs/security.md)
    pubsub_presence: bool = False           # SNORKY_PUBSUB_PRESENCE (the default app's PubSub keeps each channel's presence: every subscriber with its metadata, join/leave/update notifications for the pages that ask, counts; off: 0.1's behaviour)
    chat_presence: bool = False             # SNORKY_CHAT_PRESENCE (the default app's Chat keeps per-connection presence with metadata besides its identities; off: 0.1's behaviour)
    max_presence_entries: int = 1000        # SNORKY_MAX_PRESENCE_ENTRIES (connections in one channel's presence, PubSub and Chat with presence on; past it a subscribe / join is refused with "Presence full")
    max_presence_meta_size: int = 1024      # SNORKY_MAX_PRESENCE_META_SIZE (bytes of JSON of one connection's presence metadata)
    backend_max_body: int = 10 * 1024 * 1024  # SNORKY_BACKEND_MAX_BODY (bytes)
    header_timeout: float = 10.0            # SNORKY_HEADER_TIMEOUT (seconds for a request's line and headers to arrive, from the connection or from its first byte when kept alive; then 408 and close. Embedded server and gevent-websocket worker; 0: off)
    max_header_size: int = 64 * 1024       # SNORKY_MAX_HEADER_SIZE (bytes of request line + headers; larger: 431 and close. Embedded server and gevent-websocket worker)
    keepalive_timeout: float = 5.0          # SNORKY_KEEPALIVE_TIMEOUT (seconds an idle keep-alive HTTP connection waits for its next request)
    body_timeout: float = 60.0              # SNORKY_BODY_TIMEOUT (seconds for a request body to arrive after its headers; then 408 and close. Embedded server and gevent-websocket worker; 0: off)
    close_timeout: float = 5.0              # SNORKY_CLOSE_TIMEOUT (seconds a closing WebSocket may take, in all: what is queued, the close frame, then draining until the peer closes; then the socket is closed)
    backlog: int = 4096                     # SNORKY_BACKLOG (listen queue of pending connections; the kernel caps it at net.core.somaxconn)
    workers: int = 1                        # SNORKY_WORKERS (gunicorn)
    worker_class: str = "gevent"            # SNORKY_WORKER_CLASS (gunicorn)
    worker_connections: int = 10000         # SNORKY_WORKER_CONNECTIONS (gunicorn)
    token_secret: str | None = None         # SNORKY_TOKEN_SECRET (connection tokens on /ws)
    token_max_age: float = 3600.0           # SNORKY_TOKEN_MAX_AGE (seconds)
    datasync_dealers: str | None = None     # SNORKY_DATASYNC_DEALERS ("pkg.mod:Dealer,pkg.mod:dealers")
    datasync_timeout: float = 120.0         # SNORKY_DATASYNC_TIMEOUT (seconds to acquire a subscription)
    datasync_resume_window: float = 60.0    # SNORKY_DATASYNC_RESUME_WINDOW (seconds a DataSync subscription waits for its page to reconnect; 0: off, 0.1's frames)
    redis_url: str | None = None            # SNORKY_REDIS_URL (unset: one process, in-memory; redis://, rediss://, unix:// or redis+sentinel://host:port,host:port/service; a comma-separated list of such URLs shards the channels over several Redis; redis+cluster://host:port[,host:port...]: a Redis Cluster 7+, any nodes as seeds: scaling.md)
    cluster_heartbeat: float = 1.0          # SNORKY_CLUSTER_HEARTBEAT (seconds between a process's heartbeats, with Redis)
    cluster_expiry: float = 5.0             # SNORKY_CLUSTER_EXPIRY (seconds without heartbeat before a process's chat/messaging/cursors state is dropped; also how long a process stays subscribed to a channel after its last subscriber there left)
    sockjs_heartbeat: float = 25.0          # SNORKY_SOCKJS_HEARTBEAT (seconds between SockJS heartbeat frames)
    sockjs_disconnect_delay: float = 5.0    # SNORKY_SOCKJS_DISCONNECT_DELAY (seconds a SockJS session waits for a request)
    sockjs_response_limit: int = 128 * 1024  # SNORKY_SOCKJS_RESPONSE_LIMIT (bytes per streaming response)
    sockjs_max_body: int = 256 * 1024       # SNORKY_SOCKJS_MAX_BODY (bytes of one xhr_send/jsonp_send; larger: 413 before it is read. Snorky 0.1 took 10 MiB)
    sockjs_bind_address: bool = True        # SNORKY_SOCKJS_BIND_ADDRESS (an anonymous SockJS session answers only its client's address, as SNORKY_TRUSTED_PROXIES tells it; off behind balancers that change a client's address without trusted proxies)
    sockjs_cookie_needed: bool = False      # SNORKY_SOCKJS_COOKIE_NEEDED (JSESSIONID cookie for sticky balancers)
    sockjs_url: str | None = None           # SNORKY_SOCKJS_URL (sockjs-client for the iframe transports)
    shutdown_timeout: float = 5.0           # SNORKY_SHUTDOWN_TIMEOUT (seconds to wait for closes)
    slow_command_time: float = 0.5          # SNORKY_SLOW_COMMAND_TIME (seconds an RPC command may hold its service's lock before a warning names it; 0: off)
    log_level: str = "INFO"                 # SNORKY_LOG_LEVEL
    log_format: str = "text"                # SNORKY_LOG_FORMAT (text or json)
    access_log: bool = False                # SNORKY_ACCESS_LOG (embedded server)
    max_blocking_time: float = 0.5          # SNORKY_MAX_BLOCKING_TIME (seconds the event loop may go without switching before gevent's monitor logs the blocking call's stack and counts hub_blocked; `serve` and the shipped gunicorn config; 0: off)
    demos: bool = False                     # SNORKY_DEMOS (demo pages at /; `serve` turns them on)
    demo_database_url: str | None = None    # SNORKY_DEMO_DATABASE_URL (todo demo; default SQLite in the temp dir)
    demo_api_rate: float = 20.0             # SNORKY_DEMO_API_RATE (calls of the Todos demo's API per second per client address, bursts of twice that; past it 429 + Retry-After; 0: off)

    #: the fields read from app.config (not the environment): a server that reads
    #: its own before it loads the app (gunicorn) checks them (gunicorn_hooks)
    _from_app: frozenset[Any] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        """ValueError for a number out of range, however the settings were made."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and _out_of_range(f.name, value):
                raise ValueError(f"Settings({f.name}={value!r}): out of range: {_range(f.name)}")

    @classmethod
    def from_env(cls, environ: dict[Any, Any] | None = None) -> Settings:
        """Read ``SNORKY_<NAME>`` for every field; unset ones keep the default."""
        return cls.from_config({}, os.environ if environ is None else environ)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
                    ) -> Settings:
        """Read ``SNORKY_<NAME>`` for every field from ``config`` (a Flask app's
        ``app.config``: strings as in the environment, or values of the field's
        type), else from ``environ`` (default ``os.environ``); the rest keep
        the default.  A ``SNORKY_*`` key of ``config`` that names no setting,
        or a value that is not one, raises ValueError."""
        env = os.environ if environ is None else environ
        names = {"SNORKY_" + f.name.upper(): f for f in fields(cls) if not f.name.startswith("_")}
        only_env = sorted(k for k in config if k in ENVIRONMENT_ONLY)
        if only_env:
            raise ValueError(f"app.config: {', '.join(only_env)}: read by gunicorn from the "
                             "environment before it loads the app; set it there")
        unknown = sorted(k for k in config if isinstance(k, str) and k.startswith("SNORKY_")
                         and k not in names)
        if unknown:
            hints = [f"{k} (did you mean {', '.join(close)}?)" if close else k
                     for k in unknown
                     for close in [difflib.get_close_matches(k, names, n=1)]]
            raise ValueError(f"app.config: {', '.join(hints)}: no such snorky_sync setting "
                             "(docs/deployment.md lists them)")
        values: dict[str, Any] = {}
        from_app = set()
        for name, f in names.items():
            if name in config and config[name] is not None:
                raw, where = config[name], "app.config"
                from_app.add(f.name)
            else:
                raw, where = env.get(name), "the environment"
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse(f, raw)
            except (TypeError, ValueError):
                raise ValueError(f"{name}={raw!r} (from {where}) is not a valid "
                                 f"{_kind(f)}") from None
            value = values[f.name]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and _out_of_range(f.name, value):
                raise ValueError(f"{name}={raw!r} (from {where}) is out of range: {_range(f.name)}")
        return cls(**values, _from_app=frozenset(from_app))


def _out_of_range(name: str, value: float) -> bool:
    return value < 0 or (value == 0 and name in _POSITIVE)


def _range(name: str) -> str:
    return "above 0" if name in _POSITIVE else "0 or more"


#: numeric settings that must be above 0 (the others may be 0: off, or the
#: default their comment names); none may be negative
_POSITIVE = frozenset({"ping_interval", "max_frame_size", "max_queue_frames", "max_queue_bytes",
                       "max_connections", "max_connections_per_identity", "close_timeout",
                       "keepalive_timeout", "workers", "worker_connections", "backlog",
                       "token_max_age", "datasync_timeout", "cluster_heartbeat", "cluster_expiry",
                       "sockjs_heartbeat", "sockjs_disconnect_delay", "sockjs_response_limit",
                       "sockjs_max_body", "backend_max_body", "max_header_size"})


def _kind(f: Field[Any]) -> str:
    if f.name in _LISTS:
        return "comma-separated list"
    if f.name in _OPTIONAL_BOOLS:
        return "bool"
    return type(f.default).__name__ if f.default is not None else "string"


def _parse(f: Field[Any], raw: Any) -> Any:
    """``raw`` (a string from the environment or a value from app.config) as field ``f``'s type."""
    default = f.default
    if f.name in _LISTS:
        if isinstance(raw, str):
            return _split(raw)
        if isinstance(raw, (list, tuple)) and all(isinstance(v, str) for v in raw):
            return tuple(raw) or None
        raise TypeError(raw)
    if isinstance(default, bool) or f.name in _OPTIONAL_BOOLS:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _BOOLS:
            return _BOOLS[raw.lower()]
        raise ValueError(raw)
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise TypeError(raw)
        return int(raw)
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise TypeError(raw)
        return float(raw)
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}

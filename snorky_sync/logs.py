"""Logging helpers: rate-limited warnings for input that is dropped.

Bad frames from one client must not flood the log (PROTOCOL.md §1): each
distinct kind of warning is emitted at most ``burst`` times per ``period``
seconds; the number suppressed is reported with the next one let through.
"""
from __future__ import annotations

import json
import logging
import time

__all__ = ["RateLimitedLogger", "JSONFormatter", "configure_logging", "get_logger"]


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger("snorky_sync." + name)


class RateLimitedLogger:
    """Wraps a logger; ``warning(kind, msg, *args)`` is rate-limited per kind."""

    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 10.0):
        self.logger = logger
        self.burst = burst
        self.period = period
        self._windows: dict[str, list] = {}  # kind -> [window_start, count, suppressed]

    def warning(self, kind: str, msg: str, *args) -> None:
        now = time.monotonic()
        w = self._windows.get(kind)
        if w is None or now - w[0] >= self.period:
            suppressed = w[2] if w else 0
            w = self._windows[kind] = [now, 0, 0]
            if suppressed:
                self.logger.warning("%d similar warnings (%s) suppressed", suppressed, kind)
        if w[1] < self.burst:
            w[1] += 1
            self.logger.warning(msg, *args)
        else:
            w[2] += 1


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any
    ``extra={"conn": ..., "remote": ...}`` fields the call passed."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in self._STANDARD:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for snorky_sync's entry points: ``text`` or ``json`` lines on stderr."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

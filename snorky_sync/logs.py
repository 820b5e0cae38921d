"""Logging helpers: rate-limited warnings for input that is dropped.

Bad frames from one client must not flood the log (protocol.md §1): each
distinct kind of warning is emitted at most ``burst`` times per ``period``
seconds; the number suppressed is reported with the next one let through.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["RateLimitedLogger", "JSONFormatter", "configure_logging", "printable"]

_PRINTABLE_LIMIT = 200
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7f, *range(0x80, 0xa0))}
_ESCAPES.update({ord("\\"): "\\\\", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(value: object, limit: int = _PRINTABLE_LIMIT) -> str:
    """A client-supplied value as it may go into a log line: control characters
    (CR, LF, ESC, C1), backslashes and line separators escaped, at most
    ``limit`` characters (longer: cut, with how long it was).  Bytes are
    decoded as UTF-8 with undecodable bytes escaped.  A client cannot forge
    a log line or drive a terminal through it."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
    total = len(text)
    if total > limit:
        text = text[:limit]
    text = text.translate(_ESCAPES)
    if total > limit:
        text += f"...({total} chars)"
    return text


class RateLimitedLogger:
    """Wraps a logger; ``warning(kind, msg, *args)`` (and ``info``, ``error``,
    ``exception``) is rate-limited per kind: at most ``burst`` lines of one
    kind per ``period`` seconds, whoever causes them, so one client (or
    many) cannot flood the log; the count suppressed is logged with the next
    line of that kind let through."""

    def __init__(self, logger: logging.Logger, burst: int = 10, period: float = 10.0):
        self.logger = logger
        self.burst = burst
        self.period = period
        self._windows: dict[str, list[float]] = {}  # kind -> [window_start, count, suppressed]

    def allow(self, kind: str) -> bool:
        """Count one line of ``kind``; whether it may be written."""
        now = time.monotonic()
        w = self._windows.get(kind)
        if w is None or now - w[0] >= self.period:
            suppressed = w[2] if w else 0
            w = self._windows[kind] = [now, 0, 0]
            if suppressed:
                self.logger.warning("%d similar lines (%s) suppressed", suppressed, kind)
        if w[1] < self.burst:
            w[1] += 1
            return True
        w[2] += 1
        return False

    def log(self, level: int, kind: str, msg: str, *args: object, exc_info: bool = False,
            extra: dict[str, Any] | None = None) -> None:
        if self.logger.isEnabledFor(level) and self.allow(kind):
            self.logger.log(level, msg, *args, exc_info=exc_info, extra=extra)

    def debug(self, kind: str, msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
        self.log(logging.DEBUG, kind, msg, *args, extra=extra)

    def info(self, kind: str, msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
        self.log(logging.INFO, kind, msg, *args, extra=extra)

    def warning(self, kind: str, msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
        self.log(logging.WARNING, kind, msg, *args, extra=extra)

    def error(self, kind: str, msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
        self.log(logging.ERROR, kind, msg, *args, extra=extra)

    def exception(self, kind: str, msg: str, *args: object) -> None:
        """An ERROR with the traceback being handled (rate-limited like the rest)."""
        self.log(logging.ERROR, kind, msg, *args, exc_info=True)


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


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = "INFO", json: bool | str = False) -> logging.Logger:
    """Send log lines (snorky_sync's and your app's: the root logger) somewhere
    visible, at ``level`` and up; ``json=True``: one JSON object per line
    (:class:`JSONFormatter`).  Call it once where your app is made::

        import snorky_sync
        snorky_sync.configure_logging("INFO")          # or level="DEBUG", json=True

    * Under gunicorn (its ``gunicorn.error`` logger has handlers: the app is
      loaded in a gunicorn process), the root logger writes through
      gunicorn's own handlers: the lines go where gunicorn's go
      (``--error-logfile``, stderr by default) in gunicorn's format, with its
      ``[pid]``; ``json=True`` makes gunicorn's lines JSON too (one format per
      stream).  Without this, Python's last-resort handler prints WARNING and
      up bare and drops INFO.
    * Anywhere else (``snorky_sync.serve``, ``app.run()``, a script): one
      handler on stderr, ``time LEVEL logger: message``.

    Calling it again replaces what it set (no duplicate lines).  ``json`` also
    takes ``SNORKY_LOG_FORMAT``'s values, ``"text"`` or ``"json"``.  Returns
    the root logger.
    """
    as_json = json == "json" if isinstance(json, str) else bool(json)
    formatter: logging.Formatter = JSONFormatter() if as_json else logging.Formatter(_TEXT_FORMAT)
    root = logging.getLogger()
    gunicorn_handlers = list(logging.getLogger("gunicorn.error").handlers)
    if gunicorn_handlers:
        if as_json:
            for handler in gunicorn_handlers:
                handler.setFormatter(formatter)
        root.handlers[:] = gunicorn_handlers
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return root

"""The SockJS 0.3.3 protocol as data: paths, frames, transport framing, bodies, headers.

No I/O here (architecture.md rule 1).  A SockJS message frame is ``a[...]`` of JSON
strings; the strings it carries are the very payloads of the encode-once
WebSocket frames that services queue (:func:`snorky_sync.wire.frame_payload`),
each quoted once.  Every transport then wraps SockJS frames its own way
(:data:`WRAPPERS`).
"""
from __future__ import annotations

import codecs
import hashlib
import re
import time
from collections.abc import Callable
from email.utils import formatdate

import orjson

__all__ = [
    "OPEN", "HEARTBEAT", "close_frame", "message_frame", "quote", "parse_path",
    "decode_messages", "form_field", "BodyError", "WRAPPERS", "PRELUDES", "htmlfile_prelude",
    "iframe_page", "callback_ok", "NO_CACHE", "cache_forever", "TRANSPORTS",
    "RECEIVERS", "SENDERS", "WELCOME", "STREAMING_PRELUDE",
]

OPEN = b"o"
HEARTBEAT = b"h"
WELCOME = b"Welcome to SockJS!\n"
STREAMING_PRELUDE = b"h" * 2048 + b"\n"

#: transport path -> (HTTP method, content type)
RECEIVERS = {
    "xhr": ("POST", "application/javascript; charset=UTF-8"),
    "xhr_streaming": ("POST", "application/javascript; charset=UTF-8"),
    "eventsource": ("GET", "text/event-stream"),  # always UTF-8: no charset parameter
    "htmlfile": ("GET", "text/html; charset=UTF-8"),
    "jsonp": ("GET", "application/javascript; charset=UTF-8"),
}
SENDERS = {"xhr_send": "POST", "jsonp_send": "POST"}
TRANSPORTS = frozenset(RECEIVERS) | frozenset(SENDERS) | {"websocket"}
#: receivers answering one frame per request
POLLING = frozenset({"xhr", "jsonp"})

_dumps = orjson.dumps
# Characters browsers mangle (or JavaScript parsers reject, U+2028/9) that
# the protocol asks servers to send escaped: sockjs-protocol's escapable_by_server.
_ESCAPE = re.compile("[\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")
# their UTF-8 lead bytes: a cheap test before the regex
_ESCAPE_LEADS = (b"\xe2\x80", b"\xe2\x81", b"\xef\xbf")


def _escape_char(m: re.Match[str]) -> str:
    return "\\u%04x" % ord(m.group(0))


def quote(payload: bytes) -> bytes:
    """``payload`` (UTF-8 text) as one JSON string, with the characters the
    protocol wants escaped (controls by orjson, U+2028 and friends here)."""
    out = _dumps(payload.decode("utf-8", "replace"))
    if any(lead in out for lead in _ESCAPE_LEADS):
        out = _ESCAPE.sub(_escape_char, out.decode("utf-8")).encode("utf-8")
    return out


def message_frame(quoted: list[bytes]) -> bytes:
    """``a[...]`` from already quoted messages."""
    return b"a[" + b",".join(quoted) + b"]"


def close_frame(code: int, reason: str) -> bytes:
    """``c[code,"reason"]``."""
    return b"c[" + str(int(code)).encode() + b"," + _dumps(reason) + b"]"


# -- paths ---------------------------------------------------------------------
_SESSION_PART = re.compile(r"^([^/.]+)/([^/.]+)/([a-z_]+)$")
_IFRAME = re.compile(r"^iframe[0-9a-z_.-]*\.html$")


def parse_path(rest: str) -> tuple[str, str | None]:
    """What the path under the base URL names: ``(kind, session id)``.

    kinds: ``greeting``, ``info``, ``iframe``, ``raw_websocket``, a transport
    name of :data:`TRANSPORTS` (with the session id), or ``not_found``.
    """
    if rest == "":
        return "greeting", None
    if rest == "info":
        return "info", None
    if rest == "websocket":
        return "raw_websocket", None
    if _IFRAME.match(rest) and "/" not in rest:
        return "iframe", None
    m = _SESSION_PART.match(rest)
    if m and m.group(3) in TRANSPORTS:
        return m.group(3), m.group(2)
    return "not_found", None


# -- incoming bodies -------------------------------------------------------------
class BodyError(Exception):
    """A send body the protocol refuses (answered 500 with this text)."""


def decode_messages(body: bytes | str) -> list[str]:
    """The messages of an ``xhr_send`` / ``jsonp_send`` body or of a SockJS
    WebSocket frame: a JSON array of strings (a lone string is one message)."""
    if not body:
        raise BodyError("Payload expected.")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BodyError("Broken JSON encoding.") from None
    if type(value) is str:
        return [value]
    if type(value) is not list or any(type(v) is not str for v in value):
        raise BodyError("Broken JSON encoding.")
    return value


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def form_field(body: bytes, name: bytes = b"d") -> bytes:
    """The first ``name`` field of an ``application/x-www-form-urlencoded``
    body (``jsonp_send``'s ``d=``), decoded; empty if absent.

    Linear and in C over a body the size limit has already bounded
    (``parse_qs`` spent seconds on ``d=%%%...``).  A browser escapes every
    ``%`` of a form value, so one not followed by two hex digits makes the
    body invalid (:class:`BodyError`) rather than being kept as it is.
    """
    prefix = name + b"="
    for field in body.split(b"&"):
        if field.startswith(prefix):
            value = field[len(prefix):].replace(b"+", b" ")
            if b"%" not in value:
                return value
            if _BAD_ESCAPE.search(value) is not None:
                raise BodyError("Broken JSON encoding.")
            # %XX -> \xXX, decoded by the C escape decoder (backslashes doubled first)
            return codecs.escape_decode(value.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
    return b""


# -- transport framing -----------------------------------------------------------
_CALLBACK_OK = re.compile(r"^[a-zA-Z0-9_.]+$")


def callback_ok(name: str) -> bool:
    """A JSONP / htmlfile callback name that cannot inject script."""
    return bool(_CALLBACK_OK.match(name)) and len(name) <= 256


def _xhr(frame: bytes) -> bytes:
    return frame + b"\n"


def _eventsource(frame: bytes) -> bytes:
    return b"data: " + frame + b"\r\n\r\n"


def _htmlfile(frame: bytes) -> bytes:
    return b"<script>\np(" + _js_string(frame) + b");\n</script>\r\n"


def _js_string(frame: bytes) -> bytes:
    # A JS string literal of the frame, with no "<", ">" or "&" from message
    # data: in an htmlfile <script> chunk "</" would close the element and
    # "<!--<script>" would make the HTML parser swallow every later chunk.
    out = _dumps(frame.decode("utf-8"))
    if b"<" in out or b">" in out or b"&" in out:
        out = out.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    return out


def jsonp_wrapper(callback: str) -> Callable[[bytes], bytes]:
    """``/**/callback("frame");``: the leading comment keeps the answer from
    starting with bytes the caller chose (a callback name that doubles as the
    signature of another file format, as Rosetta Flash's did, CVE-2014-4671)."""
    cb = b"/**/" + callback.encode("ascii")

    def _jsonp(frame: bytes) -> bytes:
        return cb + b"(" + _js_string(frame) + b");\r\n"
    return _jsonp


WRAPPERS: dict[str, Callable[[bytes], bytes]] = {
    "xhr": _xhr, "xhr_streaming": _xhr, "eventsource": _eventsource, "htmlfile": _htmlfile,
}

_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>
"""


def htmlfile_prelude(callback: str) -> bytes:
    """The htmlfile page head, padded past 1 KiB (browsers buffer the first KiB)."""
    head = (_HTMLFILE_HEAD % callback).encode("ascii")
    return head + b" " * max(0, 1024 - len(head) + 14) + b"\r\n\r\n"


PRELUDES = {"xhr_streaming": STREAMING_PRELUDE, "eventsource": b"\r\n"}

# -- static answers --------------------------------------------------------------
_IFRAME_PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


def iframe_page(sockjs_url: str) -> tuple[bytes, str]:
    """The iframe page loading sockjs-client from ``sockjs_url``, and its ETag."""
    safe = sockjs_url.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    body = (_IFRAME_PAGE % safe).encode("utf-8")
    return body, '"' + hashlib.md5(body).hexdigest() + '"'


NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
YEAR = 365 * 24 * 3600


def cache_forever() -> list[tuple[str, str]]:
    """Headers of a response cacheable for a year (OPTIONS answers, the iframe page)."""
    return [("Cache-Control", f"public, max-age={YEAR}"),
            ("Expires", formatdate(time.time() + YEAR, usegmt=True))]

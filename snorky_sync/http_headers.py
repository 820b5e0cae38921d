"""A faster request-header reader for the embedded (pywsgi) server.

pywsgi parses request headers with ``http.client.parse_headers``, i.e. the
``email`` package: about 9% of a WebSocket handshake here (py-spy).  This
reader handles the common case — at most 100 ``Name: value`` lines, no
continuation lines, no repeated Content-Length / Transfer-Encoding — with
plain string operations, and hands anything else to pywsgi's own parser
(on the same bytes), so unusual requests are judged exactly as before.

With ``limit`` it reads at most ``limit`` bytes of header block (plus one, to
see that there are more) and raises :class:`HeaderTooLarge` beyond: without
it pywsgi holds up to 100 lines of 64 KiB (6.5 MB) of one request's headers.
"""
from __future__ import annotations

from collections.abc import Iterator
from http.client import HTTPMessage
from io import BytesIO
from typing import Protocol, TypeVar, overload

from gevent.pywsgi import headers_factory

__all__ = ["read_headers", "FastHeaders", "HeaderTooLarge"]

MAX_LINE = 65536
MAX_HEADERS = 100
_SINGLE = ("content-length", "transfer-encoding")
_T = TypeVar("_T")


class _LineReader(Protocol):
    """What :func:`read_headers` needs of pywsgi's ``rfile``."""

    def readline(self, size: int = -1, /) -> bytes: ...


class HeaderTooLarge(ValueError):
    """The header block is longer than the ``limit`` given to :func:`read_headers`."""


class FastHeaders:
    """The part of pywsgi's header object (``OldMessage``) that pywsgi uses."""

    __slots__ = ("_items", "_first", "status")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        first: dict[str, str] = {}
        for name, value in items:
            first.setdefault(name.lower(), value)
        self._first = first
        self.status = ""

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...

    def get(self, name: str, default: object = None) -> object:
        return self._first.get(name.lower(), default)

    getheader = get

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._first

    def __delitem__(self, name: str) -> None:
        low = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]
        self._first.pop(low, None)

    @property
    def typeheader(self) -> str | None:
        return self._first.get("content-type")

    @property
    def headers(self) -> Iterator[str]:
        for name, value in self._items:
            yield f"{name}: {value}\r\n"


def read_headers(rfile: _LineReader, *args: object, limit: int | None = None) -> FastHeaders | HTTPMessage:
    """Read the header block from ``rfile``: a :class:`FastHeaders`, or
    pywsgi's own object for anything out of the ordinary.  ``limit``: the
    most bytes the block may have (:class:`HeaderTooLarge` beyond)."""
    raw: list[bytes] = []
    left = MAX_LINE * (MAX_HEADERS + 2) if limit is None else limit  # bytes the block may still have
    if left < 0:
        raise HeaderTooLarge(f"request headers larger than {limit} bytes")
    while True:
        line = rfile.readline(min(MAX_LINE, left) + 1)
        raw.append(line)
        left -= len(line)
        if left < 0:
            raise HeaderTooLarge(f"request headers larger than {limit} bytes")
        if len(line) > MAX_LINE or len(raw) > MAX_HEADERS + 1:
            more = rfile.readline(min(MAX_LINE, left) + 1)
            long_block: HTTPMessage = headers_factory(BytesIO(b"".join(raw) + more))  # pywsgi's OldMessage
            return long_block
        if line in (b"\r\n", b"\n", b""):
            break
    items: list[tuple[str, str]] = []
    seen_single: set[str] = set()
    for line in raw[:-1]:
        text = line.decode("iso-8859-1")
        name, sep, value = text.partition(":")
        low = name.lower()
        if not sep or not name or name != name.strip() or text[:1] in " \t" or low in seen_single:
            unusual: HTTPMessage = headers_factory(BytesIO(b"".join(raw)))  # the standard parser decides
            return unusual
        if low in _SINGLE:
            seen_single.add(low)
        items.append((name, value.lstrip(" \t").rstrip("\r\n")))
    return FastHeaders(items)

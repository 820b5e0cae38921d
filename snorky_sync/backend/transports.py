"""How the backend connector reaches snorky_sync: over HTTP, or in-process.

A transport is any object with ``send(message, json=None)`` returning the
reply envelope (Snorky 0.1's interface: ``json`` is the module to encode and
decode with; ``None`` or the standard :mod:`json` module mean "the fastest
equivalent", orjson).
"""
from __future__ import annotations

import json as std_json
from typing import TYPE_CHECKING, Any

import orjson
import urllib3

from .. import checks
from .connector import JSONCodec, SnorkyTransportError

if TYPE_CHECKING:
    from ..registry import ServiceRegistry

__all__ = ["HTTPTransport", "SnorkyHTTPTransport", "LocalTransport"]


def _dumps(message: Any, json: JSONCodec | None) -> bytes:
    if json is None or json is std_json:
        try:
            return orjson.dumps(message)
        except TypeError:  # e.g. non-string keys: the standard module's verdict
            return std_json.dumps(message).encode("utf-8")
    return json.dumps(message).encode("utf-8")


def _loads(data: bytes, json: JSONCodec | None) -> Any:
    if json is None or json is std_json:
        return orjson.loads(data)
    return json.loads(data.decode("utf-8"))


class HTTPTransport:
    """POSTs envelopes to the backend endpoint over pooled keep-alive connections.

    ``HTTPTransport(url, key)``, as Snorky 0.1's ``SnorkyHTTPTransport``
    (``api_key=`` is accepted for ``key``).
    """

    def __init__(self, url: str, key: str | None = None, timeout: float = 10.0, retries: int = 0,
                 maxsize: int = 10, *, api_key: str | None = None) -> None:
        if key is not None and api_key is not None:
            raise TypeError("HTTPTransport: give key or api_key, not both")
        key = key if key is not None else api_key
        url = checks.text("HTTPTransport(url, key): url", url, what="an http(s):// URL")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"HTTPTransport(url, key): url is an http(s):// URL, got {url!r:.80}")
        key = checks.text("HTTPTransport(url, key): key", key, what="the backend's API key (a string)")
        timeout = checks.seconds("HTTPTransport(timeout=...)", timeout, above=True)
        checks.count("HTTPTransport(retries=...)", retries)
        checks.count("HTTPTransport(maxsize=...)", maxsize, 1)
        self.url = url
        self.key = key
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "X-Backend-Key": key}
        self.pool = urllib3.PoolManager(
            maxsize=maxsize, timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(total=retries, redirect=0, raise_on_status=False))

    def send(self, message: dict[str, Any], json: JSONCodec | None = None) -> dict[str, Any]:
        """POST one envelope; return the reply envelope."""
        try:
            resp = self.pool.request("POST", self.url, body=_dumps(message, json),
                                     headers=self.headers)
        except urllib3.exceptions.HTTPError as exc:
            raise SnorkyTransportError(f"cannot reach {self.url}: {exc}") from exc
        if resp.status != 200:
            detail = resp.data[:200].decode("utf-8", "replace")
            raise SnorkyTransportError(f"Error from Snorky server: {resp.status} {resp.reason} "
                                       f"({self.url}: {detail})", resp.status)
        try:
            reply = _loads(resp.data, json)
        except ValueError as exc:
            raise SnorkyTransportError(f"Non-JSON response from Snorky ({self.url}): "
                                       f"{resp.data[:200]!r}") from exc
        if type(reply) is not dict or type(reply.get("message")) is not dict:
            raise SnorkyTransportError(f"{self.url} answered an unexpected body: {reply!r:.200}")
        return reply

    def close(self) -> None:
        self.pool.clear()


SnorkyHTTPTransport = HTTPTransport
"""Snorky 0.1's name (``SnorkyHTTPTransport(url, key)``)."""


class LocalTransport:
    """Calls a backend registry of this very process, without HTTP.

    For a web application served by the same process as snorky_sync (the
    demos, a small deployment): ``SnorkyBackend(LocalTransport(registry))``.
    With a distributed broker the calls still reach every process.
    """

    def __init__(self, registry: ServiceRegistry, timeout: float = 30.0) -> None:
        from ..registry import ServiceRegistry

        if not isinstance(registry, ServiceRegistry):
            raise TypeError("LocalTransport(registry): registry is the backend ServiceRegistry, "
                            f"got {type(registry).__name__}")
        self.registry = registry
        self.timeout = timeout

    def send(self, message: dict[str, Any], json: JSONCodec | None = None) -> dict[str, Any]:
        from ..endpoints.backend_http import answer_envelope

        name = message.get("service")
        if not isinstance(name, str) or name not in self.registry:
            raise SnorkyTransportError(f"Unknown service: {name!r}", 404)
        answer = answer_envelope(self.registry, message, "local (backend)", timeout=self.timeout)
        if answer is None:
            raise SnorkyTransportError(f"{name} did not answer in {self.timeout}s", 504)
        reply: dict[str, Any] = _loads(answer, json)
        return reply

    def close(self) -> None:
        pass

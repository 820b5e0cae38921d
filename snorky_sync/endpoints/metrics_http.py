"""``/metrics`` in Prometheus text format, for trusted scrapers only.

Exports every counter of :mod:`snorky_sync.metrics` (``snorky_<name>_total``
for counts, ``snorky_connections_current`` as a gauge) plus the outbound queue
depth summed over this process's connections, how many of them have a
reading greenlet (``snorky_websockets_reading``; the others are parked), the bytes owed to them
(``snorky_outbound_bytes``, its peak) and the process's budget for them.  The scraper authenticates
with the backend key, as ``X-Backend-Key: KEY`` or ``Authorization: Bearer KEY``.
"""
from __future__ import annotations

import hmac

from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from .. import client as _client
from ..metrics import rpc_calls, rpc_errors, snapshot, transport_counters
from . import local_port
from .reader import awake_readers
from .websocket import live_clients

__all__ = ["make_metrics_view"]

_GAUGES = {"connections_current"}


class _SnorkyCollector:
    broker = None  # set by make_metrics_view

    def collect(self):
        for name, value in sorted(snapshot().items()):
            if name in _GAUGES:
                yield GaugeMetricFamily(f"snorky_{name}", name.replace("_", " "), value=value)
            else:
                yield CounterMetricFamily(f"snorky_{name}", name.replace("_", " "), value=value)
        for metric, source, text in (("snorky_rpc_calls", rpc_calls, "RPC calls"),
                                     ("snorky_rpc_errors", rpc_errors, "RPC error answers")):
            family = CounterMetricFamily(metric, text, labels=["service", "command"])
            for (service, command), value in sorted(source.items()):
                family.add_metric([service, command], value)
            yield family
        by_name: dict[str, list] = {}
        for (name, transport), value in sorted(transport_counters.items()):
            by_name.setdefault(name, []).append((transport, value))
        for name, rows in by_name.items():
            family = CounterMetricFamily(f"snorky_sockjs_{name}", f"SockJS {name.replace('_', ' ')}",
                                         labels=["transport"])
            for transport, value in rows:
                family.add_metric([transport], value)
            yield family
        if self.broker is not None:
            state = self.broker.health()["state"]
            family = GaugeMetricFamily("snorky_broker_state", "1 for the broker's current state",
                                       labels=["state"])
            for s in ("local", "connected", "disconnected"):
                family.add_metric([s], 1 if s == state else 0)
            yield family
        clients = live_clients()
        yield GaugeMetricFamily("snorky_outbound_queue_frames", "frames waiting in outbound queues",
                                value=sum(c.queue_depth() for c in clients))
        yield GaugeMetricFamily("snorky_websockets_open", "open WebSocket connections",
                                value=len(clients))
        yield GaugeMetricFamily("snorky_websockets_reading", "WebSocket connections with a reading "
                                "greenlet now (the others are parked: idle, no greenlet)",
                                value=awake_readers())
        yield GaugeMetricFamily("snorky_outbound_bytes", "bytes owed to this process's connections "
                                "(queued and being written)", value=_client.outbound_bytes())
        yield GaugeMetricFamily("snorky_outbound_bytes_peak", "largest outbound_bytes seen by the "
                                "budget keeper", value=_client.stats["outbound_bytes_peak"])
        yield GaugeMetricFamily("snorky_outbound_memory_budget_bytes", "the process-wide budget "
                                "of outbound bytes (0: none)", value=_client.budget["memory_budget"])


_collector = _SnorkyCollector()
_registry = CollectorRegistry()
_registry.register(_collector)


def make_metrics_view(api_key: str, only_port: int | None = None, broker=None):
    expected = api_key.encode("utf-8")
    if broker is not None:
        _collector.broker = broker

    def snorky_metrics():
        if only_port is not None and local_port(request.environ) != only_port:
            return Response("not found\n", status=404, mimetype="text/plain")
        given = request.headers.get("X-Backend-Key")
        if given is None:
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else None
        if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            return Response("unauthorized\n", status=401, mimetype="text/plain")
        return Response(generate_latest(_registry), mimetype=CONTENT_TYPE_LATEST)

    return snorky_metrics

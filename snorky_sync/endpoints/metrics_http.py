"""``/metrics`` in Prometheus text format, for trusted scrapers only.

Exports every counter of :mod:`snorky_sync.metrics` (``snorky_<name>_total``
for counts, ``snorky_connections_current`` as a gauge) plus the outbound queue
depth summed over this process's connections, how many of them have a
reading greenlet (``snorky_websockets_reading``; the others are parked), the bytes owed to them
(``snorky_outbound_bytes``, its peak) and the process's budget for them.  The scraper authenticates
with the backend key, as ``X-Backend-Key: KEY`` or ``Authorization: Bearer KEY``.

Several worker processes (gunicorn ``-w N``): with ``PROMETHEUS_MULTIPROC_DIR``
set (a directory, emptied before the server starts) every worker copies its
values into prometheus-client's multiprocess files once a second
(:func:`start_multiprocess_export`) and on every scrape, and ``/metrics``
answers for all workers together (prometheus-client's ``MultiProcessCollector``):
counters summed (those of exited workers included), gauges summed over the
live workers (``snorky_outbound_bytes_peak``: their maximum).  Without it,
``/metrics`` answers for the one worker that took the request.
"""
from __future__ import annotations

import atexit
import hmac
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

from .. import outbound as _outbound
from ..metrics import rpc_calls, rpc_errors, snapshot, transport_counters
from . import connections as _connections
from . import local_port
from .reader import awake_readers

if TYPE_CHECKING:  # pragma: no cover
    from ..brokers.base import Broker
    from ..runtime import Runtime

__all__ = ["make_metrics_view", "multiprocess_dir", "start_multiprocess_export"]

log = logging.getLogger("snorky_sync.metrics")

_GAUGES = {"connections_current"}
#: gauges whose workers' values are not summed across workers (multiprocess mode)
_GAUGE_MODES = {"snorky_outbound_bytes_peak": "livemax"}


class _SnorkyCollector:
    """This process's values (``brokers()``: the brokers whose state is shown;
    ``runtime``: the app whose connections and outbound budget are shown, by
    default every connection of the process and the budget of clients made
    without an app)."""

    def __init__(self, brokers: Callable[[], Iterable[Any]] = tuple, runtime: Runtime | None = None) -> None:
        self.brokers = brokers
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(snapshot().items()):
            if name in _GAUGES:
                yield GaugeMetricFamily(f"snorky_{name}", name.replace("_", " "), value=value)
            else:
                yield CounterMetricFamily(f"snorky_{name}", name.replace("_", " "), value=value)
        for metric, source, text in (("snorky_rpc_calls", rpc_calls, "RPC calls"),
                                     ("snorky_rpc_errors", rpc_errors, "RPC error answers")):
            family: CounterMetricFamily | GaugeMetricFamily = CounterMetricFamily(
                metric, text, labels=["service", "command"])
            for (service, command), value in sorted(source.items()):
                family.add_metric([service, command], value)
            yield family
        by_name: dict[str, list[Any]] = {}
        for (name, transport), value in sorted(transport_counters.items()):
            by_name.setdefault(name, []).append((transport, value))
        for name, rows in by_name.items():
            family = CounterMetricFamily(f"snorky_sockjs_{name}", f"SockJS {name.replace('_', ' ')}",
                                         labels=["transport"])
            for transport, value in rows:
                family.add_metric([transport], value)
            yield family
        brokers = list(self.brokers())
        if brokers:
            states = [b.health()["state"] for b in brokers]
            family = GaugeMetricFamily("snorky_broker_state", "brokers in each state (1 for the "
                                       "broker's current state; summed over workers)",
                                       labels=["state"])
            for s in ("local", "connected", "degraded", "disconnected"):
                family.add_metric([s], states.count(s))
            yield family
        runtime = self.runtime
        clients = (list(runtime.connections.live) if runtime is not None
                   else _connections.live_clients())
        budget = runtime.outbound if runtime is not None else _outbound.DEFAULT
        yield GaugeMetricFamily("snorky_outbound_queue_frames", "frames waiting in outbound queues",
                                value=sum(c.queue_depth() for c in clients))
        yield GaugeMetricFamily("snorky_websockets_open", "open WebSocket connections",
                                value=len(clients))
        yield GaugeMetricFamily("snorky_websockets_reading", "WebSocket connections with a reading "
                                "greenlet now (the others are parked: idle, no greenlet)",
                                value=awake_readers())
        yield GaugeMetricFamily("snorky_outbound_bytes", "bytes owed to this process's connections "
                                "(queued and being written)", value=budget.owed_now())
        yield GaugeMetricFamily("snorky_outbound_bytes_peak", "largest outbound_bytes seen by the "
                                "budget keeper", value=budget.peak)
        yield GaugeMetricFamily("snorky_outbound_memory_budget_bytes", "the budget of outbound "
                                "bytes (0: none)", value=budget.limit)


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when it is usable here, else None."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and os.path.isdir(path) else None


class _Export:
    """This process's values copied into prometheus-client's multiprocess
    files (its Counter and Gauge objects), from which any worker's scrape
    reads them all."""

    def __init__(self, collector: _SnorkyCollector) -> None:
        self.collector = collector
        self.metrics: dict[str, Counter | Gauge] = {}
        self.last: dict[tuple[Any, ...], float] = {}
        self.pid = os.getpid()

    def sync(self) -> None:
        for family in self.collector.collect():
            for sample in family.samples:
                labels = sample.labels
                key = (family.name, tuple(sorted(labels.items())))
                value = sample.value
                last = self.last.get(key)
                if last == value:
                    continue
                metric = self.metrics.get(family.name)
                if metric is None:
                    metric = self._make(family, sorted(labels))
                child: Any = metric.labels(**labels) if labels else metric
                if family.type == "counter":
                    if value > (last or 0.0):  # (counters only grow; a restart is a new pid)
                        child.inc(value - (last or 0.0))
                else:
                    child.set(value)
                self.last[key] = value

    def _make(self, family: Metric, labelnames: list[str]) -> Counter | Gauge:
        metric: Counter | Gauge
        if family.type == "counter":
            metric = Counter(family.name, family.documentation, labelnames, registry=None)
        else:
            metric = Gauge(family.name, family.documentation, labelnames, registry=None,
                           multiprocess_mode=_GAUGE_MODES.get(family.name, "livesum"))  # type: ignore[arg-type]
        self.metrics[family.name] = metric
        return metric


_exports: dict[int, _Export] = {}  # id(collector) -> its export, in this process


def _export_for(collector: _SnorkyCollector) -> _Export:
    export = _exports.get(id(collector))
    if export is None or export.pid != os.getpid():
        export = _exports[id(collector)] = _Export(collector)
    return export


def start_multiprocess_export(collector: _SnorkyCollector, interval: float = 1.0) -> None:
    """In a serving process (a worker): copy this process's values into the
    multiprocess files every ``interval`` seconds, and drop its live gauges at
    exit.  Nothing without ``PROMETHEUS_MULTIPROC_DIR``."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        log.error("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported: "
                  "/metrics answers for this worker only (set it in the environment the "
                  "server starts with)")
        return
    import gevent

    export = _export_for(collector)
    if getattr(export, "greenlet", None) is not None:
        return

    def run() -> None:
        while True:
            try:
                export.sync()
            except Exception:
                log.exception("copying this worker's metrics for /metrics failed")
            gevent.sleep(interval)

    export.greenlet = gevent.spawn(run)  # type: ignore[attr-defined]
    atexit.register(_mark_dead, os.getpid())


def _mark_dead(pid: int) -> None:
    from ..metrics import mark_worker_dead

    mark_worker_dead(pid)


def _scrape(collector: _SnorkyCollector) -> bytes:
    path = multiprocess_dir()
    if path is None:
        registry = CollectorRegistry()
        registry.register(collector)
        return generate_latest(registry)
    from prometheus_client.multiprocess import MultiProcessCollector

    _export_for(collector).sync()  # this worker's values are current; the others' at most 1 s old
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    return generate_latest(registry)


def make_metrics_view(api_key: str, only_port: int | None = None, broker: Broker | None = None,
                      brokers: Callable[[], Iterable[Any]] | None = None, on_serve: list[Any] | None = None,
                      runtime: Runtime | None = None) -> Callable[[], Response]:
    """The view; ``brokers()`` (or the one ``broker``) for ``snorky_broker_state``;
    ``on_serve``: where to add what starts when the app serves (the
    multiprocess export)."""
    expected = api_key.encode("utf-8")
    if brokers is None:
        brokers = (lambda: (broker,)) if broker is not None else tuple
    collector = _SnorkyCollector(brokers, runtime)
    if on_serve is not None:
        on_serve.append(lambda: start_multiprocess_export(collector))
    else:
        start_multiprocess_export(collector)

    def snorky_metrics() -> Response:
        if only_port is not None and local_port(request.environ) != only_port:
            return Response("not found\n", status=404, mimetype="text/plain")
        given = request.headers.get("X-Backend-Key")
        if given is None:
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else None
        if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            return Response("unauthorized\n", status=401, mimetype="text/plain")
        return Response(_scrape(collector), mimetype=CONTENT_TYPE_LATEST)

    return snorky_metrics

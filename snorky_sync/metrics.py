"""Process-wide counters (connections, frames, drops).

A plain dict so the hot path pays one dict update; exported as text by the
metrics endpoint and read by tests and the benchmark.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Protocol

__all__ = ["counters", "rpc_calls", "rpc_errors", "transport_counters", "snapshot", "mark_worker_dead",
           "child_exit", "on_starting"]

counters: defaultdict[str, int] = defaultdict(int)
#: (service, command) -> calls / error answers.  Unknown commands count as "?".
rpc_calls: defaultdict[tuple[str, str], int] = defaultdict(int)
rpc_errors: defaultdict[tuple[str, str], int] = defaultdict(int)
#: (name, SockJS transport) -> count: sessions_opened, sessions_closed, messages_in, messages_out
transport_counters: defaultdict[tuple[str, str], int] = defaultdict(int)


class _Worker(Protocol):
    """What :func:`child_exit` reads of gunicorn's worker object (gunicorn has no types)."""

    pid: int


def snapshot() -> dict[str, int]:
    """A copy of every counter, for reports and tests."""
    return dict(counters)


def mark_worker_dead(pid: int) -> None:
    """Drop the gauges of worker ``pid`` from ``/metrics`` (multiprocess mode,
    ``PROMETHEUS_MULTIPROC_DIR``); its counters stay counted.  A worker does it
    itself when it exits; :func:`child_exit` covers the ones that were killed."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        except OSError:
            pass


def child_exit(server: object, worker: _Worker) -> None:
    """gunicorn server hook (in the arbiter): a worker is gone, even killed."""
    mark_worker_dead(worker.pid)


def on_starting(server: object) -> None:
    """gunicorn server hook (in the arbiter, before any worker): empty
    ``PROMETHEUS_MULTIPROC_DIR`` of the previous run's files, as
    prometheus-client's multiprocess mode requires (its ``*.db`` files only)."""
    import glob
    import os

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.path.isdir(path):
        for name in glob.glob(os.path.join(path, "*.db")):
            try:
                os.remove(name)
            except OSError:
                pass

"""A DataSync subscription acquired while deltas flow (tests/cluster).

:func:`acquire_while_publishing`: a subscription is authorized, batches
(one delta of each model) are published without pause through several
processes, and a page acquires the token meanwhile (on a process that may
not be the one that authorized it: it takes the subscription over); then a
last batch.  Every delta published after the authorization must reach the
page once, each model's in order, whatever the race.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .waiting import wait_for
from .wsclient import SnorkyTestClient

__all__ = ["acquire_while_publishing"]


def acquire_while_publishing(authorize: Callable[[], str],
                             publishers: Sequence[Callable[[list[dict[str, Any]]], Any]],
                             page: Callable[[], SnorkyTestClient], models: Sequence[str],
                             before: int = 0, service: str = "datasync") -> None:
    """``authorize()`` -> a token for the items of ``models``; each of
    ``publishers`` publishes a batch (in turn); ``page()`` a connection to
    acquire with; ``before``: batches published before the acquisition (at
    least).  Asserts what the page received (see the module)."""
    token = authorize()
    done = threading.Event()
    sent = [0]
    failed: list[BaseException] = []

    def publish() -> None:
        try:
            while not done.is_set() or sent[0] < before + 3:
                i = sent[0]
                publishers[i % len(publishers)]([{"type": "insert", "model": m, "data": {"id": i}}
                                                 for m in models])
                sent[0] += 1
        except BaseException as exc:  # (reported by the test's thread)
            failed.append(exc)

    client = page()
    thread = threading.Thread(target=publish)
    thread.start()
    try:
        wait_for(lambda: sent[0] >= before or failed, 10, "deltas published before the acquisition")
        client.ok(service, "acquireSubscription", {"token": token})
        after = sent[0]
        wait_for(lambda: sent[0] >= after + 3 or failed, 10, "deltas published after it")
    finally:
        done.set()
        thread.join(20)
    assert not failed, failed
    # a last batch after everything: each delta before it came once, in order
    last = sent[0]
    publishers[0]([{"type": "insert", "model": m, "data": {"id": last}} for m in models])
    got: set[str] = set()
    while got != set(models):
        got.add(client.wait_for(lambda m: m.get("type") == "delta"
                                and m["delta"]["data"]["id"] == last)["delta"]["model"])
    deltas = [e["message"]["delta"] for e in client.received if e["message"].get("type") == "delta"]
    seen = {m: [d["data"]["id"] for d in deltas if d["model"] == m] for m in models}
    assert seen == {m: list(range(last + 1)) for m in models}, seen

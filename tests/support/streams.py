"""A numbered stream of publishes across a fault (a Redis killed, failed over).

Publishes 0, 1, 2, ... from a thread, one every ``every`` seconds, until
:meth:`Stream.stop`; ``accepted`` lists, in order, the numbers whose publish
returned True (taken by the server: the ones a subscriber is owed)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Stream"]


class Stream:
    def __init__(self, publish: Callable[[int], Any], every: float = 0.01) -> None:
        self.publish = publish
        self.every = every
        self.accepted: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            if self.publish(seq):
                self.accepted.append(seq)
            seq += 1
            self._stop.wait(self.every)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop publishing and wait for the last publish to be answered."""
        self._stop.set()
        self._thread.join(timeout)

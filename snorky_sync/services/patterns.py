"""Channel name patterns: exact names and shell-style globs (``news``, ``prices.*``).

Used by :class:`~snorky_sync.services.pubsub.PubSubService`'s ``backend_only``
rule (and ``SNORKY_BACKEND_ONLY_CHANNELS``).  A pattern matches string
channels only (``*`` any run of characters, ``?`` one, ``[...]`` a set, as
:func:`fnmatch.fnmatchcase`, case-sensitive); a channel that is not a string
(a list, an object: channels are any JSON value) never matches.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from .. import checks

__all__ = ["ChannelPatterns"]

_GLOB = re.compile(r"[*?\[]")


class ChannelPatterns:
    """An immutable set of names and globs; ``channel in patterns``."""

    __slots__ = ("patterns", "_names", "_regex")

    def __init__(self, patterns: Iterable[str] | str = ()) -> None:
        if isinstance(patterns, str):
            patterns = (patterns,)
        items = tuple(patterns)
        for p in items:
            checks.text("a channel pattern (backend_only)", p, what="a non-empty string")
        self.patterns = items
        self._names = frozenset(p for p in items if not _GLOB.search(p))
        globs = [fnmatch.translate(p) for p in items if _GLOB.search(p)]
        self._regex = re.compile("|".join(globs)).match if globs else None

    def __contains__(self, channel: Any) -> bool:
        if type(channel) is not str:
            return False
        if channel in self._names:
            return True
        return self._regex is not None and self._regex(channel) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChannelPatterns):
            return set(self.patterns) == set(other.patterns)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self.patterns))

    def __repr__(self) -> str:
        return f"ChannelPatterns({list(self.patterns)!r})"

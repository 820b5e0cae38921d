"""The pip command that installs one of snorky_sync's extras.

snorky_sync is installed from a wheel or a clone, not from PyPI, so
``pip install "snorky_sync[redis]"`` fails for a user who has the package
and lacks the extra.  The extra's own requirements, read from the installed
package's metadata, install with any pip wherever snorky_sync came from.
"""
from __future__ import annotations

import importlib.metadata
import re

__all__ = ["install_command"]

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def install_command(extra: str) -> str:
    """``pip install "redis[hiredis]>=5"`` for ``extra="redis"``: the
    requirements of the extra as this installation declares them."""
    try:
        declared = importlib.metadata.requires("snorky_sync") or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover (run from a bare source tree)
        declared = []
    wanted = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        found = _EXTRA.search(marker)
        if found and found.group(1) == extra:
            wanted.append(spec.strip())
    if not declared:  # no metadata: name the extra
        return f'pip install "snorky_sync[{extra}]"'
    if not wanted:
        raise ValueError(f"snorky_sync has no extra {extra!r}")
    return "pip install " + " ".join(f'"{spec}"' for spec in wanted)

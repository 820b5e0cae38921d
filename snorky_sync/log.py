"""Snorky 0.1's logger module: ``snorky_log`` is the ``snorky_sync`` logger.

Every logger of the package is a child of it (``snorky_sync.registry``,
``snorky_sync.services``, ...), so configuring ``snorky_log`` configures them
all, as configuring ``snorky.log.snorky_log`` did in 0.1.
"""
import logging

__all__ = ["snorky_log"]

snorky_log = logging.getLogger("snorky_sync")

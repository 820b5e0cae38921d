"""Snorky 0.1's module path for :class:`~snorky_sync.registry.ServiceRegistry`
(``from snorky.service_registry import ServiceRegistry``)."""
from .registry import ServiceRegistry

__all__ = ["ServiceRegistry"]

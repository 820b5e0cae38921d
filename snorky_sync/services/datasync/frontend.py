"""Snorky 0.1's module path for the frontend (``snorky.services.datasync.frontend``)."""
from .service import DataSyncService

__all__ = ["DataSyncService"]

"""Snorky 0.1's module path for the delta classes (``snorky.services.datasync.delta``)."""
from .deltas import Delta, DeletionDelta, InsertionDelta, UpdateDelta

__all__ = ["Delta", "InsertionDelta", "UpdateDelta", "DeletionDelta"]

"""Snorky 0.1's module path for the delta classes (``snorky.services.datasync.delta``)."""
from .deltas import DeletionDelta, Delta, InsertionDelta, UpdateDelta

__all__ = ["Delta", "InsertionDelta", "UpdateDelta", "DeletionDelta"]

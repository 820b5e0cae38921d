"""DataSync deltas: what ``publishDeltas`` accepts and what subscribers receive.

A delta is a JSON object (PROTOCOL.md §3)::

    {"type": "insert", "model": M, "data": d}
    {"type": "update", "model": M, "newData": n, "oldData": o}
    {"type": "delete", "model": M, "data": d}

:func:`validate_deltas` checks a whole batch before anything is delivered and
returns normalized copies (only the fields above), raising
:exc:`~snorky_sync.services.base.RPCError` with the protocol's error texts.
"""
from __future__ import annotations

from typing import Any

from ..base import RPCError

__all__ = ["DELTA_TYPES", "validate_delta", "validate_deltas",
           "insertion_delta", "deletion_delta", "update_delta"]

DELTA_TYPES = ("insert", "update", "delete")


def insertion_delta(model: str, data: Any) -> dict:
    """``{"type": "insert", "model": model, "data": data}``."""
    return {"type": "insert", "model": model, "data": data}


def deletion_delta(model: str, data: Any) -> dict:
    """``{"type": "delete", "model": model, "data": data}``."""
    return {"type": "delete", "model": model, "data": data}


def update_delta(model: str, new_data: Any, old_data: Any) -> dict:
    """``{"type": "update", "model": model, "newData": ..., "oldData": ...}``."""
    return {"type": "update", "model": model, "newData": new_data, "oldData": old_data}


def validate_delta(delta: Any) -> dict:
    """A normalized copy of one delta, or RPCError.

    Checks in Snorky 0.1's order: ``type`` and ``model`` present
    (``Missing field``), ``model must be string``, ``Invalid delta type``,
    then the data fields (``Missing field``).
    """
    if not isinstance(delta, dict):
        raise RPCError("delta must be an object")
    if "type" not in delta or "model" not in delta:
        raise RPCError("Missing field")
    kind = delta["type"]
    model = delta["model"]
    if not isinstance(model, str):
        raise RPCError("model must be string")
    if kind == "insert" or kind == "delete":
        if "data" not in delta:
            raise RPCError("Missing field")
        return {"type": kind, "model": model, "data": delta["data"]}
    if kind == "update":
        if "newData" not in delta or "oldData" not in delta:
            raise RPCError("Missing field")
        return update_delta(model, delta["newData"], delta["oldData"])
    raise RPCError("Invalid delta type")


def validate_deltas(deltas: Any) -> list[dict]:
    """Validate a batch: every delta is checked before any is delivered."""
    if not isinstance(deltas, (list, tuple)):
        raise RPCError("deltas must be a list")
    return [validate_delta(d) for d in deltas]

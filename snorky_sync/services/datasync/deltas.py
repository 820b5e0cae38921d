"""DataSync deltas: what ``publishDeltas`` accepts and what subscribers receive.

A delta is a JSON object (protocol.md §3)::

    {"type": "insert", "model": M, "data": d}
    {"type": "update", "model": M, "newData": n, "oldData": o}
    {"type": "delete", "model": M, "data": d}

In Python it is one of Snorky 0.1's classes, :class:`InsertionDelta`,
:class:`UpdateDelta` and :class:`DeletionDelta` (all :class:`Delta`), each a
``dict`` that *is* that JSON object: ``delta.model``, ``delta.data``,
``delta.new_data``, ``delta.old_data`` and ``delta.for_json()`` work as in
0.1, ``delta["type"]`` as a dict, and it is encoded without copying.

:func:`validate_deltas` checks a whole batch before anything is delivered and
returns normalized copies (only the fields above), raising
:exc:`~snorky_sync.services.base.RPCError` with the protocol's error texts.
"""
from __future__ import annotations

from typing import Any

from ..base import RPCError

__all__ = ["DELTA_TYPES", "Delta", "InsertionDelta", "UpdateDelta", "DeletionDelta",
           "validate_delta", "validate_deltas", "insertion_delta", "deletion_delta",
           "update_delta"]

DELTA_TYPES = ("insert", "update", "delete")


class Delta(dict[str, Any]):
    """Any data change notification: a dict holding its JSON form."""

    __slots__ = ()

    model = property(lambda self: self["model"], doc="The model (class name) that changed.")

    def for_json(self) -> dict[Any, Any]:
        """The delta as sent to subscribers (the object itself)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    @staticmethod
    def from_json(delta: dict[Any, Any]) -> Delta:
        """The Delta class instance for a (validated) JSON delta."""
        kind = delta["type"]
        if kind == "update":
            return UpdateDelta(delta["model"], delta["newData"], delta["oldData"])
        return (InsertionDelta if kind == "insert" else DeletionDelta)(delta["model"], delta["data"])


class InsertionDelta(Delta):
    """``{"type": "insert", "model": model, "data": data}``."""

    __slots__ = ()

    def __init__(self, model: str, data: Any) -> None:
        dict.__init__(self, type="insert", model=model, data=data)

    data = property(lambda self: self["data"], doc="The inserted data.")


class UpdateDelta(Delta):
    """``{"type": "update", "model": model, "newData": new_data, "oldData": old_data}``."""

    __slots__ = ()

    def __init__(self, model: str, new_data: Any, old_data: Any) -> None:
        dict.__init__(self, type="update", model=model, newData=new_data, oldData=old_data)

    new_data = property(lambda self: self["newData"], doc="The data after the update.")
    old_data = property(lambda self: self["oldData"], doc="The data before the update.")


class DeletionDelta(Delta):
    """``{"type": "delete", "model": model, "data": data}``."""

    __slots__ = ()

    def __init__(self, model: str, data: Any) -> None:
        dict.__init__(self, type="delete", model=model, data=data)

    data = property(lambda self: self["data"], doc="The deleted data.")


insertion_delta = InsertionDelta
deletion_delta = DeletionDelta
update_delta = UpdateDelta


def validate_delta(delta: Any) -> dict[Any, Any]:
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
        return (InsertionDelta if kind == "insert" else DeletionDelta)(model, delta["data"])
    if kind == "update":
        if "newData" not in delta or "oldData" not in delta:
            raise RPCError("Missing field")
        return update_delta(model, delta["newData"], delta["oldData"])
    raise RPCError("Invalid delta type")


def validate_deltas(deltas: Any) -> list[dict[Any, Any]]:
    """Validate a batch: every delta is checked before any is delivered."""
    if not isinstance(deltas, (list, tuple)):
        raise RPCError("deltas must be a list")
    return [validate_delta(d) for d in deltas]

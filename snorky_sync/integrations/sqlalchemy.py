"""DataSync deltas from SQLAlchemy 2 sessions (Flask-SQLAlchemy included).

::

    from snorky_sync.integrations.sqlalchemy import DeltaPublisher, subscribable

    @subscribable                         # model "Todo"; data: its columns (or its jsonify())
    class Todo(db.Model):
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String(200))

    DeltaPublisher(backend).attach(db.session)   # backend: a SnorkyBackend (HTTP or local)

Every flush records the deltas of the subscribable objects it writes —
insert (with the new primary key), update (``oldData`` from the attribute
history, the stored row when the old value was never loaded), delete — and
the commit sends them, in order, in one ``publishDeltas`` call.  A rollback
sends nothing, and a rolled-back savepoint (``begin_nested``) drops only its
own changes.  An update that changes nothing the data shows sends nothing.

What bypasses the session's unit of work (``session.execute(update(...))``,
bulk inserts, raw SQL, another program) sends nothing: publish those with
``backend.publish_deltas`` or see :mod:`snorky_sync.integrations.postgres`.
A failed call is logged (logger ``snorky_sync.integrations.sqlalchemy``) and
counted (``publisher.failures``); ``raise_errors=True`` raises it from the
commit instead (the database transaction is committed either way).
"""
from __future__ import annotations

import datetime
import decimal
import enum
import logging
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, overload

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import ColumnProperty

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper, Session, SessionTransaction

    from ..backend.connector import SnorkyBackend

__all__ = ["subscribable", "DeltaPublisher", "model_data", "is_subscribable"]

log = logging.getLogger("snorky_sync.integrations.sqlalchemy")

_PENDING = "snorky_sync.pending"          # session.info: [(transaction, delta)] in order
_ROLLED_BACK = "snorky_sync.rolled_back"  # session.info: savepoints rolled back meanwhile
_OLD = "snorky_sync.old"                  # session.info: {object: old data} for this flush

_C = TypeVar("_C", bound=type)
Jsonify = Callable[[Any], Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _columns(cls: type) -> list[str]:
    mapper: Mapper[Any] = inspect(cls)
    return [p.key for p in mapper.attrs if isinstance(p, ColumnProperty)]


def model_data(obj: Any) -> dict[str, Any]:
    """The default data of a subscribable object: every column attribute
    (dates ISO 8601, decimals and UUIDs as strings, enums by value)."""
    return {key: _jsonable(getattr(obj, key)) for key in _columns(type(obj))}


@overload
def subscribable(cls: _C, *, model: str | None = None, jsonify: Jsonify | None = None) -> _C: ...


@overload
def subscribable(cls: None = None, *, model: str | None = None,
                 jsonify: Jsonify | None = None) -> Callable[[_C], _C]: ...


def subscribable(cls: _C | None = None, *, model: str | None = None,
                 jsonify: Jsonify | None = None) -> _C | Callable[[_C], _C]:
    """Mark a mapped class: its inserts, updates and deletes become deltas.

    ``model``: the delta's model name (default: the class name);
    ``jsonify(obj)``: its data (default: the class's own ``jsonify()`` method
    if it has one, else :func:`model_data`).  For ``oldData`` the function
    is called with an object holding the old column values.
    """
    def mark(klass: _C) -> _C:
        if not isinstance(klass, type):
            raise TypeError(f"@subscribable decorates a mapped class, got {klass!r}")
        if jsonify is not None and not callable(jsonify):
            raise TypeError(f"subscribable(jsonify=...) wants a callable, got {type(jsonify).__name__}")
        own = getattr(klass, "jsonify", None)
        setattr(klass, "__snorky__", (model or klass.__name__,  # noqa: B010  (no such attribute for mypy)
                                      jsonify or (own if callable(own) else model_data)))
        return klass
    return mark(cls) if cls is not None else mark


def is_subscribable(obj: object) -> bool:
    """Whether ``obj``'s class was marked with :func:`subscribable`."""
    return hasattr(type(obj), "__snorky__")


class DeltaPublisher:
    """Sends the deltas of the sessions it is attached to, after each commit.

    ``backend``: a :class:`~snorky_sync.backend.SnorkyBackend` (HTTP or local
    transport); ``service``: the DataSyncBackend's name.
    """

    def __init__(self, backend: SnorkyBackend, service: str = "datasync_backend",
                 raise_errors: bool = False) -> None:
        if not callable(getattr(backend, "publish_deltas", None)):
            raise TypeError("DeltaPublisher(backend): backend is a snorky_sync.backend.SnorkyBackend, "
                            f"got {type(backend).__name__}")
        self.backend = backend
        self.service = service
        self.raise_errors = raise_errors
        self.failures = 0
        self.batches = 0

    def attach(self, target: Any) -> DeltaPublisher:
        """Listen to ``target``: a Session, sessionmaker, scoped_session
        (``db.session`` of Flask-SQLAlchemy) or Session class."""
        event.listen(target, "before_flush", self._before_flush)
        event.listen(target, "after_flush", self._after_flush)
        event.listen(target, "after_soft_rollback", self._after_soft_rollback)
        event.listen(target, "after_commit", self._after_commit)
        event.listen(target, "after_transaction_end", self._after_transaction_end)
        return self

    def detach(self, target: Any) -> None:
        """Stop listening to ``target``."""
        for name, fn in (("before_flush", self._before_flush), ("after_flush", self._after_flush),
                         ("after_soft_rollback", self._after_soft_rollback),
                         ("after_commit", self._after_commit),
                         ("after_transaction_end", self._after_transaction_end)):
            event.remove(target, name, fn)

    # -- recording --------------------------------------------------------------
    @staticmethod
    def _data(obj: Any, values: dict[str, Any] | None = None) -> Any:
        """``jsonify(obj)``, or of the old column ``values`` when given."""
        _, jsonify = type(obj).__snorky__
        if values is None:
            return jsonify(obj)
        if jsonify is model_data:
            return {key: _jsonable(value) for key, value in values.items()}
        return jsonify(SimpleNamespace(**values))

    def _old_values(self, session: Session, obj: Any) -> dict[str, Any]:
        state = inspect(obj)
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for key in _columns(type(obj)):
            hist = state.attrs[key].history
            if hist.deleted:
                values[key] = hist.deleted[0]
            elif hist.unchanged:
                values[key] = hist.unchanged[0]
            elif key in state.unloaded or hist.added:
                unknown.append(key)
            else:
                values[key] = None
        if unknown:  # set without ever being loaded: read the stored row
            mapper = state.mapper
            cols = [mapper.get_property(k).columns[0] for k in unknown]
            pk = dict(zip([c.key for c in mapper.primary_key], state.identity or ()))
            stmt = select(*cols).where(*[c == pk[c.key] for c in mapper.primary_key])
            with session.no_autoflush:
                row = session.connection(bind_arguments={"mapper": mapper}).execute(stmt).one()
            values.update(zip(unknown, row))
        return values

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        old: dict[Any, Any] = {}
        session.info[_OLD] = old
        for obj in session.dirty:
            if is_subscribable(obj) and session.is_modified(obj, include_collections=False):
                old[obj] = self._data(obj, self._old_values(session, obj))
        for obj in session.deleted:
            if is_subscribable(obj):
                old[obj] = self._data(obj)

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        old = session.info.pop(_OLD, {})
        tag = session.get_nested_transaction() or session.get_transaction()
        pending = session.info.setdefault(_PENDING, [])
        for obj in session.new:
            if is_subscribable(obj):
                pending.append((tag, {"type": "insert", "model": type(obj).__snorky__[0],
                                      "data": self._data(obj)}))
        for obj in session.dirty:
            if obj in old and obj not in session.deleted:
                new = self._data(obj)
                if new != old[obj]:
                    pending.append((tag, {"type": "update", "model": type(obj).__snorky__[0],
                                          "newData": new, "oldData": old[obj]}))
        for obj in session.deleted:
            if obj in old:
                pending.append((tag, {"type": "delete", "model": type(obj).__snorky__[0],
                                      "data": old[obj]}))

    # -- transactions --------------------------------------------------------------
    def _after_soft_rollback(self, session: Session, previous_transaction: SessionTransaction) -> None:
        if previous_transaction.nested:
            session.info.setdefault(_ROLLED_BACK, set()).add(previous_transaction)
        else:
            session.info.pop(_PENDING, None)
            session.info.pop(_ROLLED_BACK, None)

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # the root ended (committed and sent, or rolled back)
            session.info.pop(_PENDING, None)
            session.info.pop(_ROLLED_BACK, None)

    def _after_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint released: its deltas wait for the outermost commit
        pending = session.info.pop(_PENDING, None)
        rolled_back = session.info.pop(_ROLLED_BACK, set())
        if not pending:
            return
        deltas = [delta for tag, delta in pending if not self._discarded(tag, rolled_back)]
        if deltas:
            self._send(deltas)

    @staticmethod
    def _discarded(tag: SessionTransaction | None, rolled_back: set[SessionTransaction]) -> bool:
        while tag is not None:
            if tag in rolled_back:
                return True
            tag = tag.parent
        return False

    def _send(self, deltas: list[dict[str, Any]]) -> None:
        self.batches += 1
        try:
            self.backend.publish_deltas(deltas, service=self.service)
        except Exception as exc:
            self.failures += 1
            if self.raise_errors:
                raise
            log.error("%d DataSync deltas not delivered (%s: %s); the commit stands, "
                      "subscribers did not see it", len(deltas), type(exc).__name__, exc)

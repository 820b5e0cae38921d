"""Snorky 0.1's Django connector: model changes become DataSync deltas.

::

    from django.db import models
    from snorky_sync.backend.django import subscribable

    @subscribable
    class Task(models.Model):
        title = models.CharField(max_length=100)
        completed = models.BooleanField(default=False)

        def jsonify(self):
            return {"id": self.id, "title": self.title, "completed": self.completed}

Settings (as in 0.1): ``SNORKY_BACKEND_URL`` and ``SNORKY_API_KEY`` (the
backend to call), ``SNORKY_DATASYNC_SERVICE`` (default
``"datasync_backend"``), ``SNORKY_JSON_ENCODER`` (a JSONEncoder class or its
dotted path; default Django's ``DjangoJSONEncoder``, which also knows dates,
decimals and UUIDs).  New: ``SNORKY_RAISE_ERRORS`` (default False).

Beyond 0.1:

* Deltas leave after the transaction commits (``transaction.on_commit``),
  never for a rolled-back change (savepoints included), and all the deltas of
  one transaction go in one backend call, in the order the changes were made.
  Outside a transaction (autocommit) each change is sent when it is saved.
* A Snorky server that is down or refuses the call does not break the
  user's ``save()``: the failure is logged (logger ``snorky_sync.backend.django``)
  and counted (:data:`failures`); with ``SNORKY_RAISE_ERRORS = True`` it raises
  :class:`~snorky_sync.backend.SnorkyError` / ``SnorkyTransportError`` from the
  commit instead.
* The default ``jsonify`` (a model without its own) works on current Django
  REST framework (a ``ModelSerializer`` of every field) and without it
  (``model_to_dict`` plus the primary key).
* What bypasses model signals — ``QuerySet.update()``, ``bulk_create()``,
  ``QuerySet.delete()`` of a queryset without signals, raw SQL — sends
  nothing by itself: call :func:`publish_deltas_on_commit` with the deltas
  (:func:`insertion_delta`, :func:`update_delta`, :func:`deletion_delta` build
  them from instances).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from .. import SnorkyBackend, SnorkyError, SnorkyHTTPTransport

if TYPE_CHECKING:
    # Django ships no type information (django-stubs is not a dependency):
    # for mypy a Model is Any, and so is everything read from Django.
    from django.db.models import Model

__all__ = [
    "subscribable", "publish_deltas", "authorize_subscription", "publish_deltas_on_commit",
    "insertion_delta", "update_delta", "deletion_delta", "JSONModule", "rest_framework_jsonify",
    "handle_pre_save", "handle_post_save", "handle_pre_delete", "handle_post_delete", "failures",
]

log = logging.getLogger("snorky_sync.backend.django")

Delta = dict[str, Any]
_M = TypeVar("_M", bound=type)

failures = {"count": 0}
"""How many batches could not be delivered (``failures["count"]``)."""


# -- configuration (read from Django's settings when first needed) -----------------
def _setting(name: str, default: Any = None) -> Any:
    return getattr(settings, name, default)


def _encoder() -> type[json.JSONEncoder]:
    from django.core.serializers.json import DjangoJSONEncoder
    from django.utils.module_loading import import_string

    encoder = _setting("SNORKY_JSON_ENCODER", DjangoJSONEncoder)
    cls: type[json.JSONEncoder] = import_string(encoder) if isinstance(encoder, str) else encoder
    return cls


class JSONModule:
    """The ``json`` module the connector encodes with: ``SNORKY_JSON_ENCODER``."""

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        kwargs["cls"] = _encoder()
        return json.dumps(obj, *args, **kwargs)

    @staticmethod
    def loads(obj: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return json.loads(obj, *args, **kwargs)


_backend: SnorkyBackend | None = None
_backend_config: tuple[Any, Any] | None = None


def _get_backend() -> SnorkyBackend:
    """The connector for the current settings (rebuilt when they change, e.g. in tests)."""
    global _backend, _backend_config
    url, key = _setting("SNORKY_BACKEND_URL"), _setting("SNORKY_API_KEY")
    if not url or not key:
        from django.core.exceptions import ImproperlyConfigured
        raise ImproperlyConfigured("snorky_sync.backend.django needs the settings "
                                   "SNORKY_BACKEND_URL and SNORKY_API_KEY")
    if _backend is None or _backend_config != (url, key):
        _backend = SnorkyBackend(SnorkyHTTPTransport(url, key=key), json=JSONModule)
        _backend_config = (url, key)
    return _backend


def __getattr__(name: str) -> Any:
    # 0.1's module-level names, computed from the settings when asked for
    if name == "snorky_backend":
        return _get_backend()
    if name == "http_transport":
        return _get_backend().transport
    if name == "SNORKY_DATASYNC_SERVICE":
        return _service()
    if name == "SNORKY_JSON_ENCODER":
        return _encoder()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _service() -> str:
    service: str = _setting("SNORKY_DATASYNC_SERVICE", "datasync_backend")
    return service


# -- 0.1's calls ------------------------------------------------------------------
def publish_deltas(deltas: list[Delta]) -> None:
    """Send ``deltas`` to Snorky now (0.1's call; the signal handlers wait for the commit)."""
    _get_backend().call(_service(), "publishDeltas", deltas=deltas)


def authorize_subscription(items: list[dict[str, Any]], requester: str | None = None) -> str:
    """A subscription token for ``items`` (``[{"dealer": ..., "query": ...}]``).

    ``requester`` (not in 0.1) names who the page belongs to (``"user:42"``,
    ``"addr:203.0.113.7"``): the server caps the unacquired subscriptions
    of each (``SNORKY_MAX_PENDING_PER_REQUESTER``), so one visitor loading
    pages in a loop cannot use up everyone's.  An error answer raises
    RuntimeError("Error from Snorky server: ...") as in 0.1."""
    params: dict[str, Any] = {"items": items}
    if requester is not None:
        params["requester"] = requester
    try:
        token: str = _get_backend().call(_service(), "authorizeSubscription", **params)
        return token
    except SnorkyError as err:
        raise RuntimeError("Error from Snorky server: %s" % err.args[0]) from err


# -- deltas after commit, one call per transaction ---------------------------------
class _Batch:
    """The deltas of one transaction.  Each delta has an on_commit hook of its
    own (so Django drops it if its savepoint rolls back); the batch's flush hook
    is kept last in the connection's hook list, so it runs after every
    surviving delta hook and sends them in one call."""

    __slots__ = ("using", "committed", "hook")

    def __init__(self, using: str) -> None:
        self.using = using
        self.committed: list[Delta] = []
        self.hook = self.flush

    def add(self, delta: Delta) -> None:
        def committed() -> None:
            self.committed.append(delta)
        transaction.on_commit(committed, using=self.using)
        conn = connections[self.using]
        # move the flush hook to the end (sids: none, so only a full rollback drops it)
        conn.run_on_commit = [entry for entry in conn.run_on_commit if entry[1] is not self.hook]
        conn.run_on_commit.append((set(), self.hook, False))

    def alive(self) -> bool:
        return any(entry[1] is self.hook for entry in connections[self.using].run_on_commit)

    def flush(self) -> None:
        deltas, self.committed = self.committed, []
        if deltas:
            _send(deltas)


_batches: dict[int, _Batch] = {}   # id(connection) -> batch of its open transaction


def publish_deltas_on_commit(deltas: Iterable[Delta], using: str | None = None) -> None:
    """Send ``deltas`` once the current transaction of ``using`` commits (with
    the others of that transaction, in one call); at once outside a transaction."""
    using = using or DEFAULT_DB_ALIAS
    pending = list(deltas)
    conn = connections[using]
    if not conn.in_atomic_block:
        if pending:
            _send(pending)
        return
    batch = _batches.get(id(conn))
    if batch is None or batch.using != using or not batch.alive():
        batch = _batches[id(conn)] = _Batch(using)
    for delta in pending:
        batch.add(delta)


def _send(deltas: list[Delta]) -> None:
    try:
        publish_deltas(deltas)
    except Exception as exc:
        failures["count"] += 1
        if _setting("SNORKY_RAISE_ERRORS", False):
            raise
        log.error("%d DataSync deltas not delivered to Snorky (%s: %s); the change is saved, "
                  "subscribers did not see it", len(deltas), type(exc).__name__, exc)


# -- building deltas ----------------------------------------------------------------
def insertion_delta(instance: Model) -> Delta:
    """The insert delta of a saved instance."""
    return {"type": "insert", "model": type(instance).__name__, "data": instance.jsonify()}


def deletion_delta(instance: Model) -> Delta:
    """The delete delta of an instance (as it was)."""
    return {"type": "delete", "model": type(instance).__name__, "data": instance.jsonify()}


def update_delta(old_instance: Model, new_instance: Model) -> Delta:
    """The update delta from ``old_instance`` to ``new_instance``."""
    return {"type": "update", "model": type(new_instance).__name__,
            "newData": new_instance.jsonify(), "oldData": old_instance.jsonify()}


# -- 0.1's signal handlers (same names and signatures) ------------------------------
def handle_pre_save(sender: type[Model], instance: Model, raw: bool, using: str,
                    update_fields: Iterable[str] | None, **kwargs: Any) -> None:
    """Before a save: fetch the stored row; if there is one, remember the update delta."""
    old = sender._default_manager.using(using).filter(pk=instance.pk).first() \
        if instance.pk is not None else None
    instance._snorky_delta = update_delta(old, instance) if old is not None else None


def handle_post_save(sender: type[Model], instance: Model, created: bool, raw: bool, using: str,
                     update_fields: Iterable[str] | None, **kwargs: Any) -> None:
    """After a save: queue the insert delta (with the new primary key) or the update."""
    delta = getattr(instance, "_snorky_delta", None)
    instance._snorky_delta = None
    if created or delta is None:
        delta = insertion_delta(instance)
    elif delta["newData"] != instance.jsonify():  # changed by the save itself (auto_now, ...)
        delta["newData"] = instance.jsonify()
    publish_deltas_on_commit([delta], using)


def handle_pre_delete(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    """Before a delete: remember the data as stored."""
    stored = sender._default_manager.using(using).filter(pk=instance.pk).first()
    instance._snorky_delta = deletion_delta(stored if stored is not None else instance)


def handle_post_delete(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    """After a delete: queue the deletion delta."""
    delta = getattr(instance, "_snorky_delta", None) or deletion_delta(instance)
    instance._snorky_delta = None
    publish_deltas_on_commit([delta], using)


def rest_framework_jsonify(self: Model) -> Any:
    """The default ``jsonify``: every field, through Django REST framework's
    ``ModelSerializer`` when it is installed, else ``model_to_dict`` (plus the
    primary key)."""
    try:
        from rest_framework import serializers
    except ImportError:
        from django.forms.models import model_to_dict
        data = model_to_dict(self)
        data.setdefault(self._meta.pk.attname, self.pk)
        return data
    model = type(self)
    serializer = _serializers.get(model)
    if serializer is None:
        meta = type("Meta", (), {"model": model, "fields": "__all__"})
        serializer = _serializers[model] = type(f"{model.__name__}SnorkySerializer",
                                                (serializers.ModelSerializer,), {"Meta": meta})
    return serializer(self).data


_serializers: dict[type[Model], type[Any]] = {}


def subscribable(model_class: _M) -> _M:
    """Class decorator: the model's saves and deletes publish DataSync deltas."""
    from django.db import models

    if not (isinstance(model_class, type) and issubclass(model_class, models.Model)):
        raise TypeError(f"@subscribable decorates a Django model class, got {model_class!r}")
    pre_save.connect(handle_pre_save, sender=model_class, weak=False)
    post_save.connect(handle_post_save, sender=model_class, weak=False)
    pre_delete.connect(handle_pre_delete, sender=model_class, weak=False)
    post_delete.connect(handle_post_delete, sender=model_class, weak=False)
    if not hasattr(model_class, "jsonify"):
        setattr(model_class, "jsonify", rest_framework_jsonify)  # noqa: B010  (no such attribute for mypy)
    return model_class

"""Snorky 0.1's Django connector, used as 0.1's DataSync documentation shows,
against a real snorky_sync server: deltas reach a real WebSocket subscriber
after commit, never for a rollback, one backend call per transaction."""
import logging

import pytest
import requests
from django.db import transaction

import snorky_sync.backend.django as connector
from snorky_sync.backend import SnorkyTransportError
from support.wsclient import SnorkyTestClient
from todo_app.models import Note, Task


def subscriber(srv, dealer="AllTasks", query=None):
    """A browser's connection subscribed to ``dealer`` (token authorized by the connector)."""
    token = connector.authorize_subscription([{"dealer": dealer, "query": query}])
    ws = SnorkyTestClient(srv.ws_url + "/ws")
    ws.ok("datasync", "acquireSubscription", {"token": token})
    return ws


def next_delta(ws):
    return ws.wait_for(lambda m: m.get("type") == "delta")["delta"]


@pytest.fixture
def calls(monkeypatch):
    """The batches the connector sends (each still goes to the real server)."""
    sent = []
    real = connector.publish_deltas

    def counting(deltas):
        sent.append([(d["type"], d["model"]) for d in deltas])
        return real(deltas)

    monkeypatch.setattr(connector, "publish_deltas", counting)
    return sent


def test_saves_and_deletes_become_deltas_as_in_01(snorky_server, db, calls):
    ws = subscriber(snorky_server)
    task = Task(title="Buy milk")
    task.save(using=db)                                  # autocommit: sent at once
    assert next_delta(ws) == {"type": "insert", "model": "Task",
                              "data": {"id": task.id, "title": "Buy milk", "completed": False}}
    task.completed = True
    task.save(using=db)
    assert next_delta(ws) == {"type": "update", "model": "Task",
                              "newData": {"id": task.id, "title": "Buy milk", "completed": True},
                              "oldData": {"id": task.id, "title": "Buy milk", "completed": False}}
    task_id = task.id
    task.delete(using=db)
    assert next_delta(ws) == {"type": "delete", "model": "Task",
                              "data": {"id": task_id, "title": "Buy milk", "completed": True}}
    assert calls == [[("insert", "Task")], [("update", "Task")], [("delete", "Task")]]


def test_a_transaction_sends_once_after_commit_in_order(snorky_server, db, calls):
    ws = subscriber(snorky_server)
    with transaction.atomic(using=db):
        a = Task.objects.using(db).create(title="a")
        b = Task.objects.using(db).create(title="b")
        a.title = "a2"
        a.save(using=db)
        b.delete(using=db)
        assert calls == []                              # nothing before the commit
    assert calls == [[("insert", "Task"), ("insert", "Task"), ("update", "Task"), ("delete", "Task")]]
    got = [next_delta(ws) for _ in range(4)]
    assert [(d["type"], (d.get("data") or d["newData"])["title"]) for d in got] == [
        ("insert", "a"), ("insert", "b"), ("update", "a2"), ("delete", "b")]


def test_a_rolled_back_transaction_sends_nothing(snorky_server, db, calls):
    ws = subscriber(snorky_server)
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=db):
            Task.objects.using(db).create(title="never")
            raise RuntimeError("rollback")
    assert calls == [] and not Task.objects.using(db).filter(title="never").exists()
    Task.objects.using(db).create(title="kept")
    assert next_delta(ws)["data"]["title"] == "kept"    # the first delta is the committed one


def test_a_rolled_back_savepoint_drops_only_its_changes(snorky_server, db, calls):
    ws = subscriber(snorky_server)
    with transaction.atomic(using=db):
        Task.objects.using(db).create(title="outer 1")
        try:
            with transaction.atomic(using=db):
                Task.objects.using(db).create(title="inner")
                raise ValueError
        except ValueError:
            pass
        Task.objects.using(db).create(title="outer 2")
    assert calls == [[("insert", "Task"), ("insert", "Task")]]
    assert [next_delta(ws)["data"]["title"] for _ in range(2)] == ["outer 1", "outer 2"]
    assert list(Task.objects.using(db).values_list("title", flat=True).order_by("id")) == ["outer 1", "outer 2"]


def test_default_jsonify_without_a_method_of_its_own(snorky_server, db):
    ws = subscriber(snorky_server, dealer="Note")
    note = Note.objects.using(db).create(text="hello")
    data = next_delta(ws)["data"]
    assert data["id"] == note.id and data["text"] == "hello"
    assert data["created"].startswith(str(note.created.year))   # a datetime, encoded


def test_changes_that_bypass_signals_are_published_by_the_helper(snorky_server, db, calls):
    ws = subscriber(snorky_server)
    task = Task.objects.using(db).create(title="t")
    next_delta(ws)
    with transaction.atomic(using=db):
        before = Task.objects.using(db).get(pk=task.pk)
        Task.objects.using(db).filter(pk=task.pk).update(completed=True)   # no signal
        after = Task.objects.using(db).get(pk=task.pk)
        connector.publish_deltas_on_commit([connector.update_delta(before, after)], using=db)
    assert calls[-1] == [("update", "Task")]
    delta = next_delta(ws)
    assert (delta["oldData"]["completed"], delta["newData"]["completed"]) == (False, True)


def test_a_snorky_server_down_does_not_break_save(snorky_server, db, monkeypatch, caplog):
    from django.conf import settings

    monkeypatch.setattr(settings, "SNORKY_BACKEND_URL", "http://127.0.0.1:9/backend")  # nobody there
    before = connector.failures["count"]
    with caplog.at_level(logging.ERROR, logger="snorky_sync.backend.django"):
        task = Task.objects.using(db).create(title="saved anyway")
    assert Task.objects.using(db).filter(pk=task.pk).exists()
    assert connector.failures["count"] == before + 1
    assert "not delivered to Snorky" in caplog.text
    monkeypatch.setattr(settings, "SNORKY_RAISE_ERRORS", True, raising=False)
    with pytest.raises(SnorkyTransportError):
        Task.objects.using(db).create(title="loud")


def test_authorize_subscription_errors_as_in_01(snorky_server):
    with pytest.raises(RuntimeError, match="Error from Snorky server: No such dealer"):
        connector.authorize_subscription([{"dealer": "nope", "query": None}])


def test_list_view_hands_out_a_subscription_token(snorky_server, django_http, default_db):
    Task.objects.create(title="existing")
    plain = requests.get(django_http + "/api/tasks/", timeout=10)
    assert plain.status_code == 200 and "X-Subscription-Token" not in plain.headers
    listed = requests.get(django_http + "/api/tasks/", headers={"X-Snorky": "Subscribe"}, timeout=10)
    assert [t["title"] for t in listed.json()] == ["existing"]
    ws = SnorkyTestClient(snorky_server.ws_url + "/ws")
    ws.ok("datasync", "acquireSubscription", {"token": listed.headers["X-Subscription-Token"]})

    created = requests.post(django_http + "/api/tasks/", json={"title": "from the API"}, timeout=10).json()
    assert next_delta(ws) == {"type": "insert", "model": "Task", "data": created}
    requests.patch(f"{django_http}/api/tasks/{created['id']}/", json={"completed": True}, timeout=10)
    assert next_delta(ws)["newData"] == dict(created, completed=True)
    requests.delete(f"{django_http}/api/tasks/{created['id']}/", timeout=10)
    assert next_delta(ws)["type"] == "delete"


def test_list_create_view_with_the_model_as_dealer(snorky_server, django_http, default_db):
    listed = requests.get(django_http + "/api/notes/", headers={"X-Snorky": "subscribe"}, timeout=10)
    ws = SnorkyTestClient(snorky_server.ws_url + "/ws")
    ws.ok("datasync", "acquireSubscription", {"token": listed.headers["X-Subscription-Token"]})
    created = requests.post(django_http + "/api/notes/", json={"text": "n"}, timeout=10)
    assert created.status_code == 201
    assert next_delta(ws)["data"] == created.json()


def test_an_01_authorize_subscription_of_ones_own_is_still_called(snorky_server, django_http, default_db,
                                                                 monkeypatch):
    """0.1 code that replaces the views' authorize_subscription with one of its
    own takes 0.1's one argument, ``items``: it is called so (no TypeError
    for the ``requester`` it does not know); one that takes ``requester`` gets it."""
    import snorky_sync.backend.django.rest_framework as snorky_views

    real = connector.authorize_subscription
    seen = []

    def audited(items):                              # as 0.1's authorize_subscription(items)
        seen.append(items)
        return real(items)

    monkeypatch.setattr(snorky_views, "authorize_subscription", audited)
    listed = requests.get(django_http + "/api/tasks/", headers={"X-Snorky": "Subscribe"}, timeout=10)
    assert listed.status_code == 200, listed.text[:500]
    assert seen == [[{"dealer": "AllTasks", "query": None}]]
    ws = SnorkyTestClient(snorky_server.ws_url + "/ws")
    try:
        ws.ok("datasync", "acquireSubscription", {"token": listed.headers["X-Subscription-Token"]})
    finally:
        ws.close()

    def with_requester(items, requester=None):
        seen.append(requester)
        return real(items, requester=requester)

    monkeypatch.setattr(snorky_views, "authorize_subscription", with_requester)
    listed = requests.get(django_http + "/api/tasks/", headers={"X-Snorky": "Subscribe"}, timeout=10)
    assert listed.status_code == 200 and listed.headers["X-Subscription-Token"]
    assert seen[-1] == "addr:127.0.0.1"

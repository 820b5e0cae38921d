"""snorky_sync.integrations.sqlalchemy: SQLAlchemy sessions publish DataSync deltas
after commit, to a real server over the HTTP connector, seen by a real
WebSocket subscriber; on SQLite and on PostgreSQL (the tests' own, support.postgres)."""
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from snorky_sync.backend import HTTPTransport, SnorkyBackend, SnorkyTransportError
from snorky_sync.integrations.sqlalchemy import DeltaPublisher, subscribable
from support.postgres import fresh_database
from support.servers import API_KEY
from support.wsclient import SnorkyTestClient

class Base(DeclarativeBase):
    pass


@subscribable                                   # model "Todo", data: the columns
class Todo(Base):
    __tablename__ = "sa_todos"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    list: Mapped[str] = mapped_column(default="home")
    completed: Mapped[bool] = mapped_column(default=False)


@subscribable(model="Todo", jsonify=lambda n: {"id": 1000 + n.id, "title": n.text.upper(), "list": "notes"})
class Note(Base):
    __tablename__ = "sa_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]


class Untracked(Base):
    __tablename__ = "sa_untracked"
    id: Mapped[int] = mapped_column(primary_key=True)


@pytest.fixture(scope="module")
def server(testapp_server):
    return testapp_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('sa') / 'db.sqlite3'}")
        Base.metadata.create_all(eng)
        yield eng
        eng.dispose()
        return
    with fresh_database("snorky_sa_") as url:
        eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        Base.metadata.create_all(eng)
        yield eng
        eng.dispose()


@pytest.fixture
def backend(server):
    return SnorkyBackend(HTTPTransport(server.url + "/backend", key=API_KEY, timeout=10))


@pytest.fixture
def session(engine, backend):
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    s = Session(engine)
    publisher = DeltaPublisher(backend).attach(s)
    s.publisher = publisher
    yield s
    s.close()


@pytest.fixture
def browser(server, backend):
    token = backend.authorize_subscription([{"dealer": "allTodos", "query": None}])
    ws = SnorkyTestClient(server.ws_url + "/ws")
    ws.ok("datasync", "acquireSubscription", {"token": token})
    yield ws
    ws.close()


def next_delta(ws):
    return ws.wait_for(lambda m: m.get("type") == "delta")["delta"]


def test_insert_update_delete_after_commit(session, browser):
    todo = Todo(title="milk")
    session.add(todo)
    session.commit()
    assert next_delta(browser) == {"type": "insert", "model": "Todo",
                                   "data": {"id": todo.id, "title": "milk", "list": "home", "completed": False}}
    todo.completed = True            # expired by the commit: never loaded before the change
    session.commit()
    assert next_delta(browser) == {
        "type": "update", "model": "Todo",
        "newData": {"id": todo.id, "title": "milk", "list": "home", "completed": True},
        "oldData": {"id": todo.id, "title": "milk", "list": "home", "completed": False}}
    loaded = session.get(Todo, todo.id)
    loaded.title, loaded.list = "oat milk", "shop"   # loaded first: old values from the history
    session.commit()
    delta = next_delta(browser)
    assert (delta["oldData"]["title"], delta["oldData"]["list"]) == ("milk", "home")
    assert (delta["newData"]["title"], delta["newData"]["list"]) == ("oat milk", "shop")
    session.delete(loaded)
    session.commit()
    assert next_delta(browser) == {"type": "delete", "model": "Todo", "data": {
        "id": todo.id, "title": "oat milk", "list": "shop", "completed": True}}
    assert session.publisher.batches == 4


def test_one_batch_per_commit_in_order(session, browser):
    a, b = Todo(title="a"), Todo(title="b")
    session.add_all([a, b])
    session.flush()
    a.title = "a2"
    session.flush()
    session.delete(b)
    session.add(Untracked())                     # not subscribable: no delta
    session.commit()
    assert session.publisher.batches == 1
    got = [next_delta(browser) for _ in range(4)]
    assert [(d["type"], (d.get("data") or d["newData"])["title"]) for d in got] == [
        ("insert", "a"), ("insert", "b"), ("update", "a2"), ("delete", "b")]


def test_rollback_sends_nothing_and_savepoints_drop_only_theirs(session, browser):
    session.add(Todo(title="never"))
    session.flush()
    session.rollback()
    assert session.publisher.batches == 0
    session.add(Todo(title="outer"))
    try:
        with session.begin_nested():
            session.add(Todo(title="inner"))
            session.flush()
            raise ValueError
    except ValueError:
        pass
    with session.begin_nested():
        session.add(Todo(title="released"))
    session.commit()
    assert session.publisher.batches == 1
    assert [next_delta(browser)["data"]["title"] for _ in range(2)] == ["outer", "released"]
    assert sorted(session.scalars(sa.select(Todo.title))) == ["outer", "released"]


def test_an_update_that_changes_nothing_sends_nothing(session, browser):
    todo = Todo(title="same")
    session.add(todo)
    session.commit()
    next_delta(browser)
    todo.title = "same"
    session.commit()
    todo.title = "changed"
    session.commit()
    assert next_delta(browser)["newData"]["title"] == "changed"   # the no-op sent nothing before it
    assert session.publisher.batches == 2


def test_custom_model_name_and_jsonify(session, browser):
    note = Note(text="hello")
    session.add(note)
    session.commit()
    assert next_delta(browser) == {"type": "insert", "model": "Todo",
                                   "data": {"id": 1000 + note.id, "title": "HELLO", "list": "notes"}}
    note.text = "bye"
    session.commit()
    delta = next_delta(browser)
    assert (delta["oldData"]["title"], delta["newData"]["title"]) == ("HELLO", "BYE")


def test_a_server_that_is_down_does_not_undo_the_commit(engine, caplog):
    dead = SnorkyBackend(HTTPTransport("http://127.0.0.1:9/backend", key=API_KEY, timeout=2))
    with Session(engine) as s:
        publisher = DeltaPublisher(dead).attach(s)
        with caplog.at_level(logging.ERROR, logger="snorky_sync.integrations.sqlalchemy"):
            s.add(Todo(title="kept"))
            s.commit()
        assert publisher.failures == 1 and "not delivered" in caplog.text
        assert s.scalar(sa.select(sa.func.count()).select_from(Todo).where(Todo.title == "kept")) == 1
    with Session(engine) as s:
        DeltaPublisher(dead, raise_errors=True).attach(s)
        s.add(Todo(title="loud"))
        with pytest.raises(SnorkyTransportError):
            s.commit()


def test_wrong_use_fails_loudly():
    with pytest.raises(TypeError, match="SnorkyBackend"):
        DeltaPublisher("http://127.0.0.1/backend")
    with pytest.raises(TypeError, match="mapped class"):
        subscribable(Todo())
    with pytest.raises(TypeError, match="callable"):
        subscribable(jsonify="id")(Untracked)


def test_old_data_of_values_never_loaded_comes_from_the_stored_row(session, browser):
    todo = Todo(title="x")
    session.add(todo)
    session.commit()                 # every attribute expired
    todo.completed = True            # set before anything is read again: no history to use
    session.commit()
    insert, update = next_delta(browser), next_delta(browser)
    assert update["oldData"] == insert["data"]
    assert update["newData"] == dict(insert["data"], completed=True)

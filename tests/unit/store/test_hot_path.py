"""The store's hot statements on the SQLite driver (``keyturn.store.hot_path``): what they
store and read is what SQLAlchemy's own execution stores and reads (timestamps through the
column type's bind processor, values bound in the statement itself), their errors are
SQLAlchemy's with the parameters hidden, and they are timed like every other statement. An
in-memory SQLite database through the inline engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from keyturn.core.errors import InternalError
from keyturn.store import hot_path
from keyturn.store.inline import InlineConnection, InlineEngine
from keyturn.store.observe import observe_statements
from tests.support.fakes import RecordingMetrics
from tests.support.store_writes import AT, EVENTS, counting

INSERT = sa.insert(EVENTS)
COUNT = counting(sqlite.insert)
LAST = sa.select(EVENTS.c.id, EVENTS.c.hits).order_by(EVENTS.c.id.desc()).limit(1)


@pytest.fixture
def engine() -> Iterator[InlineEngine]:
    sync = sa.create_engine("sqlite://")
    EVENTS.metadata.create_all(sync)
    yield InlineEngine(sync)
    sync.dispose()


def writer(engine: InlineEngine) -> InlineConnection:
    return engine.writer()


async def test_rows_are_stored_as_sqlalchemy_stores_them(engine: InlineEngine) -> None:
    conn = writer(engine)
    with conn.transaction():
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 3})
        await conn.execute(INSERT, {"id": 2, "at": AT, "hits": 3})
    stored = conn.driver_connection().execute("SELECT at FROM events ORDER BY id").fetchall()
    assert stored[0] == stored[1] == ("2026-12-06T15:30:01.000250+00:00",)
    read = (await conn.execute(sa.select(EVENTS.c.at).where(EVENTS.c.id == 1))).scalar()
    assert read == AT.astimezone(UTC)


async def test_values_bound_in_the_statement_and_returned_rows(engine: InlineEngine) -> None:
    conn = writer(engine)
    with conn.transaction():
        assert await hot_path.first_row(conn, LAST, {}) is None
        assert await hot_path.first_row(conn, COUNT, {"id": 7, "at": AT}) == (1,)
        assert await hot_path.first_row(conn, COUNT, {"id": 7, "at": AT}) == (2,)
        assert await hot_path.first_row(conn, LAST, {}) == (7, 2)


async def test_a_parameter_left_out_is_refused(engine: InlineEngine) -> None:
    conn = writer(engine)
    query = sa.select(EVENTS.c.id).where(EVENTS.c.id == sa.bindparam("id"))
    with pytest.raises(KeyError):
        await hot_path.first_row(conn, query, {})


async def test_errors_are_sqlalchemy_s_without_their_parameters(engine: InlineEngine) -> None:
    conn = writer(engine)
    with conn.transaction():
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        with pytest.raises(sa.exc.IntegrityError) as raised:
            await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 424242})
    assert "424242" not in str(raised.value)


async def test_a_plain_statement_s_failure_is_sqlalchemy_s_too(engine: InlineEngine) -> None:
    # A SAVEPOINT's RELEASE with no such savepoint: the driver's OperationalError, raised as
    # SQLAlchemy's, as the writers' error handling (``GroupCommit``) expects.
    conn = writer(engine)
    with conn.transaction(), pytest.raises(sa.exc.OperationalError):
        conn.run_plain("RELEASE SAVEPOINT never_made")


async def test_statements_on_the_driver_are_timed(engine: InlineEngine) -> None:
    recorder = RecordingMetrics()
    observe_statements(engine, recorder)
    # The store's writer is an engine made from the observed one: it is timed too.
    conn = engine.execution_options(isolation_level="SERIALIZABLE").writer()
    with conn.transaction():
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        await hot_path.first_row(conn, LAST, {})
    assert recorder.of("store_statement") == [("insert",), ("select",)]


async def test_a_select_s_row_reads_as_sqlalchemy_reads_it(engine: InlineEngine) -> None:
    conn = writer(engine)
    with conn.transaction():
        await hot_path.run(conn, INSERT, {"id": 5, "at": AT, "hits": 2})
    query = sa.select(EVENTS).where(EVENTS.c.id == sa.bindparam("id"))
    record = await hot_path.first_record(conn, query, {"id": 5})
    through_sqlalchemy = (await conn.execute(query, {"id": 5})).first()
    assert record is not None and through_sqlalchemy is not None
    assert (record.id, record.at, record.hits) == tuple(through_sqlalchemy)
    assert record.at == AT
    assert await hot_path.first_record(conn, query, {"id": 6}) is None


async def test_a_statement_with_an_expanding_parameter_is_refused(engine: InlineEngine) -> None:
    query = sa.select(EVENTS.c.id).where(EVENTS.c.id.in_([1, 2]))
    with pytest.raises(InternalError):
        await hot_path.first_row(writer(engine), query, {})


async def test_an_update_sets_the_columns_its_call_names(engine: InlineEngine) -> None:
    conn = writer(engine)
    update = sa.update(EVENTS).where(EVENTS.c.id == sa.bindparam("b_id"))
    with conn.transaction():
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        await hot_path.run(conn, INSERT, {"id": 2, "at": AT, "hits": 1})
        await hot_path.run(conn, update, {"b_id": 1, "hits": 9})
        later = AT + timedelta(seconds=5)
        await hot_path.run(conn, update, {"b_id": 2, "at": later})
    query = sa.select(EVENTS.c.at, EVENTS.c.hits).order_by(EVENTS.c.id)
    assert await hot_path.records(conn, query, {}) == [(AT, 9), (later, 1)]

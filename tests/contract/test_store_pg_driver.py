"""The store's hot statements on psycopg (``keyturn.store.pg_driver``, through
``keyturn.store.hot_path``), against a real PostgreSQL 15: they store and read what
SQLAlchemy's own execution does, in the SQLAlchemy connection's transaction (or in autocommit),
and leave a connection holding no transaction to SQLAlchemy; their errors are SQLAlchemy's
with the parameters hidden, a broken connection is invalidated (the store then reports itself
unavailable), and they are timed like every other statement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.core.errors import StoreUnavailable
from keyturn.store import hot_path, pg_driver
from keyturn.store.base import store_error
from keyturn.store.observe import observe_statements
from keyturn.store.opening import open_engine
from tests.support.fakes import RecordingMetrics
from tests.support.store_backends import StorePostgres
from tests.support.store_writes import AT, EVENTS, counting

INSERT = sa.insert(EVENTS)
COUNT = counting(postgresql.insert)
BY_ID = sa.select(EVENTS).where(EVENTS.c.id == sa.bindparam("id"))


@pytest.fixture
def database(store_postgres: StorePostgres) -> Iterator[str]:
    url = store_postgres.database(migrated=False)
    yield url
    store_postgres.drop(url)


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    made = open_engine(database)
    assert isinstance(made, AsyncEngine)
    async with made.begin() as conn:
        await conn.execute(sa.schema.CreateTable(EVENTS))
    yield made
    await made.dispose()


async def stored(engine: AsyncEngine) -> list[tuple[int, datetime, int]]:
    """What SQLAlchemy reads on a connection of its own."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(EVENTS).order_by(EVENTS.c.id))).all()
    return [(int(r.id), r.at, int(r.hits)) for r in rows]


async def test_what_it_stores_and_reads_is_what_sqlalchemy_does(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 7})
        # A value bound in the statement itself (hits=1), and RETURNING on the driver.
        assert await hot_path.first_row(conn, COUNT, {"id": 2, "at": AT}) == (1,)
        assert await hot_path.first_row(conn, COUNT, {"id": 2, "at": AT}) == (2,)
        record = await hot_path.first_record(conn, BY_ID, {"id": 1})
    assert await stored(engine) == [(1, AT, 7), (2, AT, 2)]
    assert record is not None and (record.id, record.at, record.hits) == (1, AT, 7)
    assert record.at.tzinfo is UTC  # as the column type reads it through SQLAlchemy


async def test_it_runs_in_the_transaction_sqlalchemy_holds(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            assert await pg_driver.run(conn, "SELECT 1", [], "select") == [(1,)]
            await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
            raise RuntimeError("rolled back with the transaction")
    assert await stored(engine) == []
    async with engine.begin() as conn:
        savepoint = await conn.begin_nested()
        await hot_path.run(conn, INSERT, {"id": 2, "at": AT, "hits": 1})
        await savepoint.rollback()
        await hot_path.run(conn, INSERT, {"id": 3, "at": AT, "hits": 1})
    assert [row[0] for row in await stored(engine)] == [3]


async def test_autocommit_runs_on_the_driver_and_keeps_each_statement(
    engine: AsyncEngine,
) -> None:
    single = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with single.connect() as conn:
        assert await pg_driver.run(conn, "SELECT 1", [], "select") == [(1,)]
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        assert [row[0] for row in await stored(engine)] == [1]  # kept before the block ends


async def test_a_connection_holding_no_transaction_is_left_to_sqlalchemy(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        # psycopg would open a transaction SQLAlchemy knows nothing of (and would not commit).
        assert await pg_driver.run(conn, "SELECT 1", [], "select") is None
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        await conn.commit()
    assert [row[0] for row in await stored(engine)] == [1]


async def test_errors_are_sqlalchemys_with_the_parameters_hidden(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
    with pytest.raises(sa.exc.IntegrityError) as raised:
        async with engine.begin() as conn:
            await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 424242})
    assert "424242" not in str(raised.value)


async def test_a_broken_connection_is_invalidated_and_the_store_unavailable(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        await conn.rollback()
        await conn.begin()
        async with engine.connect() as killer:
            await killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(sa.exc.DBAPIError) as raised:
            await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        assert raised.value.connection_invalidated
        assert conn.invalidated
    assert isinstance(store_error(raised.value), StoreUnavailable)
    async with engine.begin() as conn:  # the pool hands out a working connection again
        await hot_path.run(conn, INSERT, {"id": 2, "at": AT, "hits": 1})
    assert [row[0] for row in await stored(engine)] == [2]


async def test_hot_statements_are_timed(engine: AsyncEngine) -> None:
    recorder = RecordingMetrics()
    observe_statements(engine, recorder)
    # The store's writer is an engine made from the observed one: it is timed too.
    async with engine.execution_options(isolation_level="READ COMMITTED").begin() as conn:
        await hot_path.run(conn, INSERT, {"id": 1, "at": AT, "hits": 1})
        await hot_path.first_row(conn, BY_ID, {"id": 1})
    assert recorder.of("store_statement") == [("insert",), ("select",)]

"""The store's unit of work (``SqlDatabase.together``, the ``Store`` port's
``writes_together``) on every backend: a task's deferrable writes inside the block are durable
together when it is left, in one COMMIT; a failing one undoes only its own statements; and a
write that does not join (the task's own, or one of a task started inside the block, like a
worker's write-ahead) never waits on what the unit holds and sees what it wrote; when such a
write's COMMIT of the unit fails, the owner hears it on leaving. SQLite's
group commit has its own file (``test_store_group_commit``); PostgreSQL's units are
``keyturn.store.pg_units``. No timing is asserted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from keyturn.core.errors import DomainError
from keyturn.store.base import SqlDatabase
from keyturn.store.sql import SqlStore
from tests.support.store_writes import ITEMS, Boom, commits_of, insert


@pytest.fixture
async def db(backend_store: SqlStore) -> AsyncIterator[SqlDatabase]:
    database = backend_store.db
    async with database.write() as conn:
        await conn.execute(sa.schema.CreateTable(ITEMS))
    yield database


async def rows(database: SqlDatabase) -> dict[int, str]:
    """What another connection sees: the committed rows."""
    async with database.read() as conn:
        found = (await conn.execute(sa.select(ITEMS.c.n, ITEMS.c.note))).all()
    return {int(row.n): str(row.note) for row in found}


async def note(database: SqlDatabase, n: int, text: str, *, deferrable: bool = False) -> int:
    """Update row ``n``'s note; how many rows the update found."""
    async with database.write(deferrable=deferrable) as conn:
        result = await conn.execute(ITEMS.update().where(ITEMS.c.n == n).values(note=text))
        return int(result.rowcount or 0)


async def test_deferrable_writes_share_one_commit_made_on_leaving(db: SqlDatabase) -> None:
    commits = commits_of(db)
    async with db.together():
        await insert(db, 1, deferrable=True)
        await insert(db, 2, deferrable=True)
        assert commits == []
        assert await rows(db) == {}  # nothing is kept before the block is left
    assert len(commits) == 1
    assert await rows(db) == {1: "", 2: ""}


async def test_a_failing_write_undoes_only_its_own_statements(db: SqlDatabase) -> None:
    with pytest.raises(Boom):
        async with db.together():
            await insert(db, 1, deferrable=True)
            with pytest.raises(Boom):
                await insert(db, 2, fail=True, deferrable=True)
            await insert(db, 3, deferrable=True)  # the unit goes on
            raise Boom()
    # The block's error wins; the writes that succeeded are committed all the same (a
    # failed call's audit record).
    assert await rows(db) == {1: "", 3: ""}


async def test_a_failing_first_write_leaves_the_unit_usable(db: SqlDatabase) -> None:
    # A replayed nonce, say: refused at once, and the refusal's record still joins.
    async with db.together():
        with pytest.raises(Boom):
            await insert(db, 1, fail=True, deferrable=True)
        await insert(db, 2, deferrable=True)
    assert await rows(db) == {2: ""}


async def test_a_statement_error_is_raised_at_the_write(db: SqlDatabase) -> None:
    # A second active task's unique key: the caller hears it from ``create_task``.
    async with db.together():
        await insert(db, 1, deferrable=True)
        with pytest.raises(sa.exc.IntegrityError):
            await insert(db, 1, deferrable=True)
        await insert(db, 2, deferrable=True)
    assert await rows(db) == {1: "", 2: ""}


async def test_a_task_started_inside_sees_what_the_unit_wrote(db: SqlDatabase) -> None:
    # A worker's write-ahead is fenced on the task row its starter's unit just wrote: it must
    # find it (and never wait on the unit's locks, which nobody would release).
    async def worker() -> int:
        return await note(db, 1, "write-ahead")

    async with db.together():
        await insert(db, 1, deferrable=True)
        assert await asyncio.wait_for(asyncio.create_task(worker()), 30) == 1
    assert await rows(db) == {1: "write-ahead"}


async def test_a_write_that_does_not_join_commits_the_unit_first(db: SqlDatabase) -> None:
    # E.g. an attempt counter written before an engine is touched, in the same task: durable
    # on return, and the unit's writes before it are then durable too.
    async with db.together():
        await insert(db, 1, deferrable=True)
        assert await asyncio.wait_for(note(db, 1, "counted"), 30) == 1
        assert await rows(db) == {1: "counted"}
        await insert(db, 2, deferrable=True)  # a new transaction of the unit
    assert await rows(db) == {1: "counted", 2: ""}


async def test_a_task_writing_for_its_starter_joins_its_unit(db: SqlDatabase) -> None:
    # A synchronous call's worker: its finish and the answer's record share one COMMIT.
    commits = commits_of(db)

    async def worker() -> None:
        with db.for_the_starter():
            await insert(db, 1, deferrable=True)

    async with db.together():
        await asyncio.create_task(worker())
        await insert(db, 2, deferrable=True)
        assert commits == []
    assert len(commits) == 1
    assert await rows(db) == {1: "", 2: ""}


async def test_a_task_writing_for_a_starter_that_left_waits_as_usual(db: SqlDatabase) -> None:
    # The caller gave up (its deadline) before the task ended: nobody would wait for it.
    started, go_on = asyncio.Event(), asyncio.Event()

    async def worker() -> dict[int, str]:
        started.set()
        await go_on.wait()
        with db.for_the_starter():
            await insert(db, 1, deferrable=True)
        return await rows(db)  # durable on return

    async with db.together():
        running = asyncio.create_task(worker())
        await started.wait()
    go_on.set()
    assert await running == {1: ""}


async def test_outside_any_unit_a_deferrable_write_is_durable_on_return(db: SqlDatabase) -> None:
    await insert(db, 1, deferrable=True)
    assert await rows(db) == {1: ""}


async def test_a_domain_error_inside_a_write_keeps_the_unit(db: SqlDatabase) -> None:
    # The store raises domain errors from inside its writes (a lost lease, say).
    async with db.together():
        await insert(db, 1, deferrable=True)
        with pytest.raises(DomainError):
            async with db.write(deferrable=True) as conn:
                await conn.execute(ITEMS.insert().values(n=2))
                raise DomainError("refused")
    assert await rows(db) == {1: ""}


PARENTS = sa.Table("unit_parents", sa.MetaData(), sa.Column("n", sa.Integer, primary_key=True))
CHILDREN = sa.Table(
    "unit_children",
    PARENTS.metadata,
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("parent", sa.Integer, nullable=False),
    # Checked at COMMIT: a child without its parent makes the unit's COMMIT fail.
    sa.ForeignKeyConstraint(["parent"], [PARENTS.c.n], deferrable=True, initially="DEFERRED"),
)


async def test_a_failed_commit_made_for_the_unit_by_another_task_fails_its_owner(
    db: SqlDatabase,
) -> None:
    # A worker's write-ahead commits its starter's unit; if that COMMIT fails, the starter
    # must not answer as if its writes were kept.
    async with db.write() as conn:
        for table in (PARENTS, CHILDREN):
            await conn.execute(sa.schema.CreateTable(table))

    async def worker() -> None:
        await note(db, 1, "write-ahead")

    with pytest.raises(DomainError):
        async with db.together():
            await insert(db, 1, deferrable=True)
            async with db.write(deferrable=True) as conn:
                await conn.execute(CHILDREN.insert().values(n=1, parent=404))
            with pytest.raises(sa.exc.IntegrityError):
                await asyncio.create_task(worker())
            # The owner carries on, and only its leaving can tell it.
    assert await rows(db) == {}  # nothing of the unit was kept


async def test_an_owner_cancelled_while_its_unit_commits_keeps_every_write(
    db: SqlDatabase,
) -> None:
    # A caller that gives up (a client gone, a deadline) while its unit's COMMIT is under way
    # must not leave half of it: the COMMIT goes on without its owner, and keeps the whole.
    async def owner() -> None:
        async with db.together():
            await insert(db, 1, deferrable=True)
            await insert(db, 2, deferrable=True)

    task = asyncio.create_task(owner())
    # SQLAlchemy's "commit" event fires as the COMMIT starts: the owner is cancelled there.
    sa.event.listen(db.engine.sync_engine, "commit", lambda _conn: task.cancel())
    with pytest.raises(asyncio.CancelledError):
        await task
    # The COMMIT finishes in the background (a deadline, not a speed bound).
    for _ in range(500):
        if await rows(db):
            break
        await asyncio.sleep(0.01)
    assert await rows(db) == {1: "", 2: ""}


async def test_an_owner_cancelled_while_a_helper_still_writes_keeps_every_write(
    db: SqlDatabase,
) -> None:
    # A synchronous call past its deadline leaves its unit while its worker may still be
    # writing for it; if the caller is then cancelled while it waits for that write to end,
    # the unit must still be committed (not left open, holding its locks, with its rows).
    writing, release = asyncio.Event(), asyncio.Event()

    async def helper() -> None:
        with db.for_the_starter():
            async with db.write(deferrable=True) as conn:
                await conn.execute(ITEMS.insert().values(n=2))
                writing.set()
                await release.wait()

    helpers: list[asyncio.Task[None]] = []

    async def owner() -> None:
        async with db.together():
            await insert(db, 1, deferrable=True)
            helpers.append(asyncio.create_task(helper()))
            await writing.wait()

    task = asyncio.create_task(owner())
    await writing.wait()
    for _ in range(20):  # the owner leaves its block and waits for the helper's write
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await helpers[0]
    for _ in range(500):  # the COMMIT made without its owner (a deadline, not a speed bound)
        if len(await rows(db)) == 2:
            break
        await asyncio.sleep(0.01)
    assert await rows(db) == {1: "", 2: ""}

"""Group commit of the SQLite store (``keyturn.store.group_commit``): writers in flight share
one COMMIT, each leaves ``write()`` only once it is on disk, a failing writer undoes only its
own statements, and a failed COMMIT fails every writer of its batch (none is told its write was
kept). A real SQLite file; no timing is asserted."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.core.errors import InternalError, StoreUnavailable
from keyturn.store import group_commit, inline
from keyturn.store.base import SqlDatabase, store_error
from keyturn.store.inline import InlineEngine
from keyturn.store.sealing import AesGcmSecretBox
from tests.support.fakes import FakeClock
from tests.support.store_writes import ITEMS, Boom, commits_of, insert


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    ITEMS.create(engine)
    database = SqlDatabase(InlineEngine(engine), AesGcmSecretBox(os.urandom(32)), FakeClock())
    yield database
    await database.close()


async def rows(database: SqlDatabase) -> list[int]:
    async with database.read() as conn:
        return sorted(n for (n,) in (await conn.execute(sa.select(ITEMS.c.n))).all())


async def test_writers_in_flight_share_one_commit_and_are_durable_on_return(
    db: SqlDatabase,
) -> None:
    commits = commits_of(db)
    done: list[int] = []

    async def writer(n: int) -> None:
        await insert(db, n)
        # On return the row is committed: another connection sees it.
        assert n in await rows(db)
        done.append(n)

    await asyncio.gather(*(writer(n) for n in range(20)))
    assert sorted(done) == list(range(20))
    assert await rows(db) == list(range(20))
    assert 1 <= len(commits) < 20


async def test_a_failing_writer_undoes_only_its_own_statements(db: SqlDatabase) -> None:
    results = await asyncio.gather(
        insert(db, 1), insert(db, 2, fail=True), insert(db, 3), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], Boom) and results[2] is None
    assert await rows(db) == [1, 3]


async def test_a_failing_first_writer_rolls_back_alone(db: SqlDatabase) -> None:
    with pytest.raises(Boom):
        await insert(db, 1, fail=True)
    await insert(db, 2)
    assert await rows(db) == [2]


def fail_next_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next COMMIT fails as a full disk would (rolled back, then the error); later ones
    run as usual."""
    real = sa.RootTransaction.commit

    def failing(self: sa.RootTransaction, *args: Any) -> None:
        monkeypatch.setattr(sa.RootTransaction, "commit", real)
        self.rollback()
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(sa.RootTransaction, "commit", failing)


async def test_a_failed_commit_fails_every_writer_of_the_batch(
    db: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_next_commit(monkeypatch)
    results = await asyncio.gather(*(insert(db, n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, sa.exc.OperationalError) for r in results)
    assert await rows(db) == []
    await insert(db, 7)  # the store writes again afterwards
    assert await rows(db) == [7]


async def test_state_worth_nothing_after_a_crash_opens_a_batch_without_waiting(
    db: SqlDatabase,
) -> None:
    commits = commits_of(db)
    async with db.write(durable=False) as conn:
        await conn.execute(ITEMS.insert().values(n=1))
    assert commits == []  # returned before its batch's COMMIT
    await insert(db, 2)  # a durable writer joins that batch and waits for it
    assert len(commits) == 1 and await rows(db) == [1, 2]


async def test_close_commits_the_open_batch(db: SqlDatabase) -> None:
    task = asyncio.ensure_future(insert(db, 5))
    await asyncio.sleep(0)  # the writer ran; its batch's commit is still to come
    await db.close()
    await task
    engine = sa.create_engine(str(db.engine.url))
    with engine.connect() as conn:
        assert [n for (n,) in conn.execute(sa.select(ITEMS.c.n))] == [5]
    engine.dispose()


async def test_a_task_s_writes_together_share_one_commit_durable_on_leaving(
    db: SqlDatabase,
) -> None:
    # The gate's unit of work (a change's nonce and "started" record): the deferrable writes
    # return at once, leaving the block waits for one COMMIT of both.
    commits = commits_of(db)
    async with db.together():
        await insert(db, 1, deferrable=True)
        await insert(db, 2, deferrable=True)
        assert commits == []  # nothing waited for a COMMIT yet
    assert len(commits) == 1
    assert await rows(db) == [1, 2]


async def test_tasks_started_inside_together_wait_for_their_own_writes(db: SqlDatabase) -> None:
    # A worker started inside the unit inherits its context but must not defer its writes.
    async def worker() -> list[int]:
        await insert(db, 5, deferrable=True)
        return await rows(db)  # durable on return, as outside any unit

    async with db.together():
        seen = await asyncio.create_task(worker())
    assert 5 in seen


async def test_a_failed_commit_is_raised_on_leaving_together(
    db: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_next_commit(monkeypatch)
    with pytest.raises(InternalError):
        async with db.together():
            await insert(db, 1, deferrable=True)
            await insert(db, 2, deferrable=True)
    assert await rows(db) == []


async def test_a_failing_write_inside_together_raises_at_the_write(db: SqlDatabase) -> None:
    with pytest.raises(Boom):
        async with db.together():
            await insert(db, 1, deferrable=True)
            await insert(db, 2, fail=True, deferrable=True)
    # The block's error wins; the writes that succeeded before it are committed.
    assert await rows(db) == [1]


async def test_a_write_that_does_not_opt_in_is_durable_on_return_inside_together(
    db: SqlDatabase,
) -> None:
    # E.g. an attempt counter written before an engine is touched in the same task.
    commits = commits_of(db)
    async with db.together():
        await insert(db, 1, deferrable=True)
        await insert(db, 2)  # waits for its batch (here the same one as the first write)
        assert len(commits) == 1
        assert await rows(db) == [1, 2]


async def test_state_worth_nothing_joining_a_batch_does_not_wait_for_its_commit(
    db: SqlDatabase,
) -> None:
    commits = commits_of(db)
    durable = asyncio.ensure_future(insert(db, 1))
    await asyncio.sleep(0)  # the durable writer opens a batch and waits for its COMMIT
    async with db.write(durable=False) as conn:
        await conn.execute(ITEMS.insert().values(n=2))
    assert commits == []  # joined the open batch, returned before its COMMIT
    await durable
    assert len(commits) == 1 and await rows(db) == [1, 2]


async def test_a_batch_of_deferred_writes_is_held_for_the_next_writer_that_waits(
    db: SqlDatabase,
) -> None:
    # A synchronous reset: the task row (deferred, in the gate's unit) and its worker's
    # write-ahead (which waits) share one COMMIT, though the worker first talks to an engine.
    commits = commits_of(db)

    async def worker() -> None:
        await asyncio.sleep(0.001)  # the engine's round trips
        await insert(db, 2)  # the write-ahead: durable on return
        assert await rows(db) == [1, 2]

    async with db.together():
        await insert(db, 1, deferrable=True)
        await asyncio.create_task(worker())
        assert len(commits) == 1
    assert len(commits) == 1


async def test_a_held_batch_is_committed_after_hold_at_most(
    db: SqlDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nobody waits for it, but another process would wait for its write lock: it is not held
    # for longer than HOLD_AT_MOST.
    monkeypatch.setattr(group_commit, "HOLD_AT_MOST", 0.001)
    commits = commits_of(db)
    async with db.together():
        await insert(db, 1, deferrable=True)
        for _ in range(500):
            if commits:
                break
            await asyncio.sleep(0.01)
        assert len(commits) == 1
        assert await rows(db) == [1]
    assert len(commits) == 1


async def test_another_store_on_the_file_does_not_wait_for_a_held_batch(
    db: SqlDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "HOLD_AT_MOST", 3600.0)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    second = SqlDatabase(InlineEngine(engine), AesGcmSecretBox(os.urandom(32)), FakeClock())
    try:
        async with db.together():
            await insert(db, 1, deferrable=True)
            await insert(second, 2)
            assert await rows(db) == [1, 2]
    finally:
        await second.close()


async def test_a_task_writing_for_its_starter_joins_the_starter_s_unit(db: SqlDatabase) -> None:
    # A synchronous call's worker: its finish and the answer's record share one COMMIT, made
    # when the caller leaves its unit, and the worker does not wait for it.
    commits = commits_of(db)

    async def worker() -> None:
        with db.for_the_starter():
            await insert(db, 1, deferrable=True)
        assert commits == []

    async with db.together():
        await asyncio.create_task(worker())
        await insert(db, 2, deferrable=True)  # the answer's record
        assert commits == []
    assert len(commits) == 1
    assert await rows(db) == [1, 2]


class Ticks:
    """Counts, on the loop, how often it got to run: every ``every`` seconds (0: every loop
    iteration)."""

    def __init__(self, every: float) -> None:
        self.count = 0
        self._every = every
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(self._every)

    def stop(self) -> None:
        self._task.cancel()


def hold_write_lock(tmp_path: Path) -> sqlite3.Connection:
    """Another process's connection holding the file's write lock (``BEGIN IMMEDIATE``)."""
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_writer_waits_on_the_loop_for_another_process_s_write_lock(
    db: SqlDatabase, tmp_path: Path
) -> None:
    other = hold_write_lock(tmp_path)
    ticks = Ticks(every=0.001)
    writing = asyncio.create_task(insert(db, 1))
    await asyncio.sleep(0.05)
    # The writer waits for the lock without holding the loop (SQLite's busy handler would
    # sleep on the loop thread): other coroutines run meanwhile.
    assert not writing.done()
    assert ticks.count > 5
    other.execute("COMMIT")
    await writing
    ticks.stop()
    other.close()
    assert await rows(db) == [1]


async def test_writers_queued_behind_another_process_s_lock_share_the_next_commit(
    db: SqlDatabase, tmp_path: Path
) -> None:
    # While the first writer's BEGIN waits for the other process, the rest queue; once it
    # gets the lock they all join its batch in the next loop iteration, and its COMMIT
    # follows them (with a lock handing over one writer an iteration, that COMMIT waited
    # behind every queued writer, holding the file's write lock meanwhile).
    iterations = Ticks(every=0)
    # The loop iteration at the writer connection's latest BEGIN and at its COMMIT.
    seen: dict[str, int] = {}

    def trace(statement: str) -> None:
        seen[statement.split()[0].upper()] = iterations.count

    async with db.write() as conn:  # the writer connection, open and in WAL mode
        assert isinstance(conn, inline.InlineConnection)
        conn.driver_connection().set_trace_callback(trace)
    commits = commits_of(db)
    other = hold_write_lock(tmp_path)
    writing = [asyncio.create_task(insert(db, n)) for n in range(10)]
    await asyncio.sleep(0.02)
    assert not any(task.done() for task in writing)
    other.execute("COMMIT")
    await asyncio.gather(*writing)
    iterations.stop()
    other.close()
    assert len(commits) == 1
    assert await rows(db) == list(range(10))
    # The file was locked for one loop iteration, not one per queued writer.
    assert seen["COMMIT"] - seen["BEGIN"] <= 2


async def test_a_writer_cancelled_while_waiting_for_its_turn_leaves_the_others_theirs(
    db: SqlDatabase, tmp_path: Path
) -> None:
    other = hold_write_lock(tmp_path)
    writing = [asyncio.create_task(insert(db, n)) for n in range(4)]
    await asyncio.sleep(0.02)
    writing[2].cancel()
    other.execute("COMMIT")
    other.close()
    results = await asyncio.gather(*writing, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert await rows(db) == [0, 1, 3]


async def test_a_writer_gives_up_on_a_lock_held_past_the_busy_timeout(
    db: SqlDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline, "LOCK_PATIENCE", 0.02)
    other = hold_write_lock(tmp_path)
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            await insert(db, 1)
        assert isinstance(store_error(raised.value), StoreUnavailable)
    finally:
        other.close()
    await insert(db, 2)
    assert await rows(db) == [2]

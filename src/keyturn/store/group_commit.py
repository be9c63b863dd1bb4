"""Group commit for the inline SQLite store: the write transactions of calls in flight share
one ``COMMIT`` (one fsync), and each caller leaves ``write()`` only once that commit is on disk.

The store runs SQLite on the event loop thread (``keyturn.store.inline``), one writer
connection, its writers taking turns (``_Turns``). Without grouping every write transaction
pays its own fsync while the whole loop waits: at 64 clients that is most of a reset's cost.
Here the first writer opens a batch (``BEGIN IMMEDIATE``) and, its turn over, schedules the
batch's commit as a task; every writer whose turn comes before that task's runs in the same
transaction, inside a ``SAVEPOINT`` of its own, so a failing writer rolls back only its own
statements and gets its own error at once. The commit task then commits the batch and wakes
its writers; if the commit fails, every writer of the batch gets that error (none was told its
write was kept). A write is therefore acknowledged exactly when it is durable, as before: a
kill -9 after a caller was answered loses nothing. A batch stays open only until the loop next
runs the commit task, so one caller alone waits no longer than before (one loop iteration).

A task can make several writes durable together (``together``): inside the block each of its
``deferrable`` writes joins its batch as usual but does not wait for the batch's COMMIT;
leaving the block waits for all of them. Only writes whose durability matters no earlier than
the end of the block opt in (a nonce, an audit record, a new task's row); every other write
(an attempt counter before an engine is touched, a task's write-ahead) still waits for its own
batch. The gate uses it twice per change: the nonce and the ``started`` record (durable before
the change runs), then the task row and the answer's record (durable before the answer). A
batch opened by a deferred write is *held*: nobody waits for it yet, so its COMMIT waits for
the first writer that does wait (a synchronous reset's write-ahead, made by its worker between
the task row and the answer, commits the task row with it: one fsync instead of two), for the
end of a unit whose writes joined it, for another store on the file, or for ``HOLD_AT_MOST``.

Writes of state worth nothing after a crash (``durable=False``, the rate windows) join the
open batch, or open one, and return without waiting for its COMMIT: a read call's rate window
and its audit record share one transaction, and the call waits for one fsync. Stores on
the same file in one process share the queue (a second store waits for the first one's
batch). Another process on the file (``--workers``, the CLI) waits for an open batch to
commit, up to one loop iteration of this process and its fsync, or ``HOLD_AT_MOST`` for a held
one (keyturn's writers wait on their own loop: ``InlineConnection.write_transaction``).
Imports: SQLAlchemy (through the inline engine) and the standard library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Final, Protocol

import sqlalchemy as sa

from keyturn.core import background
from keyturn.store.inline import InlineConnection, InlineEngine

log = logging.getLogger(__name__)


class _Batch:
    """One open write transaction shared by the writers that joined it."""

    def __init__(
        self,
        owner: GroupCommit,
        shared: _FileWriters,
        conn: InlineConnection,
        transaction: sa.RootTransaction,
    ) -> None:
        self.owner = owner
        self.shared = shared
        self.conn = conn
        self.transaction = transaction
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: A writer's failure SQLite could not confine to its savepoint: the batch must not
        #: commit (its other writers' statements may be gone with it).
        self.broken: BaseException | None = None
        #: Its COMMIT is scheduled (at most once).
        self.scheduled = False
        #: While only deferred writes joined it: the timer that commits it at the latest.
        self.held: asyncio.TimerHandle | None = None


class _Turns:
    """Whose turn it is to write: one writer at a time (inside its block, or opening a
    batch), and every writer that waited is woken at once when the turn is free.

    ``asyncio.Lock`` hands the turn to one waiter at a time, each in a later loop iteration.
    Writers only queue while a batch is being opened and ``BEGIN IMMEDIATE`` waits for
    another process (a ``--workers`` sibling) to commit; with the lock, the writers queued
    meanwhile then joined the new batch one loop iteration apiece, and the batch's COMMIT
    waited behind all of them, holding the file's write lock for tens of milliseconds under
    load (measured: 24 ms a BEGIN on average, 281 ms at worst, two workers each idle a third
    of the time). Woken together, they all join the batch in the next iteration, and its
    COMMIT follows them at once. A writer's block does not suspend (the inline engine's
    statements are synchronous), so the woken writers take their turns one after another
    without waiting again; one that finds the turn taken waits for the next wake-up."""

    def __init__(self) -> None:
        self.busy = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self) -> None:
        while self.busy:
            woken = asyncio.get_running_loop().create_future()
            self._waiting.append(woken)
            try:
                await woken
            finally:
                if not woken.done():
                    woken.cancel()  # cancelled while waiting: leave() skips it
        self.busy = True

    def leave(self) -> None:
        self.busy = False
        waiting, self._waiting = self._waiting, collections.deque()
        for woken in waiting:
            if not woken.done():
                woken.set_result(None)


class _FileWriters:
    """What every store on one SQLite file shares in this process and loop: the writers'
    turns and the open batch. A second store on the same file (tests, admin helpers) waits for
    the first one's batch instead of meeting its write lock in SQLite's busy handler, which
    would block the very loop that has to commit it."""

    def __init__(self) -> None:
        self.turns = _Turns()
        self.batch: _Batch | None = None


#: Shared writer state per (database file, event loop); an entry lives while a store uses it.
_FILES: weakref.WeakValueDictionary[tuple[str, int], _FileWriters] = weakref.WeakValueDictionary()

#: Seconds a batch holding only deferred writes stays open for more of its task's writes at the
#: most: the other processes on the file wait that long for its write lock at worst.
HOLD_AT_MOST: Final = 0.01

#: The savepoint of a joining writer (one at a time: the writers take turns).
_SAVEPOINT: Final = "keyturn_writer"
_SAVEPOINT_OPEN: Final = f"SAVEPOINT {_SAVEPOINT}"
_SAVEPOINT_RELEASE: Final = f"RELEASE {_SAVEPOINT}"
_SAVEPOINT_ROLLBACK: Final = f"ROLLBACK TO {_SAVEPOINT}"


class _Unit:
    """The batches a task's writes inside ``together`` joined, not waited for yet."""

    def __init__(self) -> None:
        #: Only this task defers: tasks it starts inherit the context variable, and must
        #: still wait for their own writes (a worker started inside the block, say), unless
        #: they write for it (``for_the_starter``: its helpers).
        self.owner = asyncio.current_task()
        self.helpers: set[asyncio.Task[object]] = set()
        self.pending: list[_Batch] = []
        #: The block was left: nothing joins any more.
        self.closed = False

    def close(self) -> list[asyncio.Future[None]]:
        """End the unit: commit every batch its writes joined (a held one now); their ends."""
        self.closed = True
        for batch in self.pending:
            batch.owner.schedule_commit(batch)
        return [batch.done for batch in self.pending]


_UNIT: ContextVar[_Unit | None] = ContextVar("keyturn_write_unit", default=None)


def _deferring() -> _Unit | None:
    unit = _UNIT.get()
    if unit is None or unit.closed:
        return None
    task = asyncio.current_task()
    return unit if task is unit.owner or task in unit.helpers else None


@asynccontextmanager
async def together() -> AsyncIterator[None]:
    """Make this task's writes inside the block durable together: each joins its batch and
    returns at once (its own statement errors are still raised at the write); leaving the
    block waits for every batch they joined, usually one COMMIT. A failed COMMIT is raised on
    leaving (none of the block's writes may be taken as kept); if the block itself raised,
    that error wins, once the batches are settled."""
    unit = _Unit()
    token = _UNIT.set(unit)
    try:
        yield
    except BaseException:
        _UNIT.reset(token)
        await asyncio.gather(*(asyncio.shield(f) for f in unit.close()), return_exceptions=True)
        raise
    _UNIT.reset(token)
    for done in unit.close():
        await asyncio.shield(done)


def for_the_starter() -> AbstractContextManager[None]:
    """Inside, this task's deferrable writes join the unit (``together``) of the task that
    started it, which waits for them when it leaves its block, and return at once: for a
    task whose starter awaits its end inside the block (a synchronous call's worker, whose
    final write then shares the COMMIT of the answer's audit record). Once the starter left
    its block, or outside any unit, they wait for their COMMIT as usual."""
    return helping(_UNIT.get())


class _Helped(Protocol):
    helpers: set[asyncio.Task[object]]


@contextmanager
def helping(unit: _Helped | None) -> Iterator[None]:
    """Inside, the current task is one of ``unit``'s helpers (if there is a unit): its
    deferrable writes join the unit (the SQLite group commit's or ``pg_units``')."""
    task = asyncio.current_task()
    if unit is None or task is None:
        yield
        return
    unit.helpers.add(task)
    try:
        yield
    finally:
        unit.helpers.discard(task)


class GroupCommit:
    """The writers of one SQLite store (``engine``: its writer, ``BEGIN IMMEDIATE``)."""

    def __init__(self, engine: InlineEngine) -> None:
        self._engine = engine
        self._shared: _FileWriters | None = None
        self._committing: set[asyncio.Task[None]] = set()

    def _writers(self) -> _FileWriters:
        if self._shared is None:
            database = self._engine.url.database or ""
            file = os.path.realpath(database) if database not in ("", ":memory:") else ""
            # An in-memory database is this engine's own.
            key = (file or f"memory:{id(self)}", id(asyncio.get_running_loop()))
            found = _FILES.get(key)
            if found is None:
                found = _FILES[key] = _FileWriters()
            self._shared = found
        return self._shared

    async def _acquire(self) -> _FileWriters:
        """The file's writer turn, with no other store's batch open on it."""
        shared = self._writers()
        while True:
            await shared.turns.take()
            other = shared.batch
            if other is None or other.owner is self:
                return shared
            shared.turns.leave()
            other.owner.schedule_commit(other)  # held for its deferred writes: not any more
            with contextlib.suppress(Exception):
                await asyncio.shield(other.done)

    @asynccontextmanager
    async def write(
        self, *, durable: bool = True, deferrable: bool = False
    ) -> AsyncIterator[InlineConnection]:
        """A write transaction of its own (a savepoint of the batch), durable on return; a
        ``deferrable`` one inside ``together`` is durable when the task leaves the block."""
        failed: BaseException | None = None
        opened: _Batch | None = None
        shared = await self._acquire()
        unit = _deferring() if deferrable else None
        try:
            batch = shared.batch
            if batch is None:
                # The batch's first writer needs no savepoint: if it fails, nobody else has
                # joined yet (its turn), and the whole transaction is rolled back.
                batch = opened = await self._open(shared)
                try:
                    yield batch.conn
                except BaseException:
                    opened = None
                    self._abandon(shared, batch)
                    raise
            else:
                try:
                    batch.conn.run_plain(_SAVEPOINT_OPEN)
                    yield batch.conn
                    batch.conn.run_plain(_SAVEPOINT_RELEASE)
                except BaseException as exc:
                    await self._undo(batch, exc)
                    failed = exc
        finally:
            shared.turns.leave()
        # Every COMMIT is scheduled after the writers just woken: they join its batch first.
        # A helper's unit may have closed while this write waited (its turn, or BEGIN for
        # another process's lock): then nobody would wait for the write, so it waits itself.
        if failed is None and unit is not None and not unit.closed:
            unit.pending.append(batch)  # committed and waited for when the task leaves
            if opened is not None:
                self._hold(opened)
            return
        if failed is None and not durable:
            # Worth nothing after a crash (a rate window): it need not wait for the batch's
            # fsync either (it is visible to the writers after it; a failed COMMIT loses it,
            # as a crash would). A read call no longer waits for two fsyncs under load. It
            # leaves a held batch held: nobody waits for it yet.
            if opened is not None:
                self.schedule_commit(batch)
            return
        self.schedule_commit(batch)
        # Outside its turn: the batch's other writers run meanwhile. Shielded: one caller
        # cancelled must not cancel the commit the others wait for. A failed writer waits
        # too, so that whatever it does next (another connection, another process) never
        # meets the batch's write lock still held.
        try:
            await asyncio.shield(batch.done)
        except Exception:
            if failed is None:
                raise
        if failed is not None:
            raise failed

    async def _open(self, shared: _FileWriters) -> _Batch:
        conn = self._engine.writer()
        batch = _Batch(self, shared, conn, await conn.write_transaction())
        shared.batch = batch
        return batch

    @staticmethod
    def _hold(batch: _Batch) -> None:
        """Leave a batch opened by a deferred write open for the task's next writes (its
        COMMIT waits for the first writer that waits for it, for the end of a unit that
        joined it, or ``HOLD_AT_MOST``), instead of committing it alone."""
        loop = asyncio.get_running_loop()
        batch.held = loop.call_later(HOLD_AT_MOST, batch.owner.schedule_commit, batch)

    def schedule_commit(self, batch: _Batch) -> None:
        """COMMIT ``batch`` in a task of its own, once (a no-op for one already scheduled)."""
        if batch.scheduled:
            return
        batch.scheduled = True
        if batch.held is not None:
            batch.held.cancel()
        task = asyncio.get_running_loop().create_task(self._commit(batch.shared, batch))
        background.keep(task, self._committing)

    @staticmethod
    def _abandon(shared: _FileWriters, batch: _Batch) -> None:
        """The first writer failed: roll the transaction back, the batch is over."""
        shared.batch = None
        batch.scheduled = True
        if batch.held is not None:
            batch.held.cancel()
        try:
            if batch.transaction.is_active:
                batch.transaction.rollback()
        finally:
            batch.done.set_result(None)

    @staticmethod
    async def _undo(batch: _Batch, exc: BaseException) -> None:
        """A joining writer failed: undo its statements only, or spoil the batch if SQLite
        ended the whole transaction."""
        try:
            batch.conn.run_plain(_SAVEPOINT_ROLLBACK)
            batch.conn.run_plain(_SAVEPOINT_RELEASE)
        except BaseException as rollback_error:
            batch.broken = batch.broken or rollback_error
        if not batch.transaction.is_active:
            batch.broken = batch.broken or exc

    @staticmethod
    async def _commit(shared: _FileWriters, batch: _Batch) -> None:
        await shared.turns.take()
        try:
            if batch.done.done():
                return  # abandoned by its first writer
            shared.batch = None
            GroupCommit._settle(batch)
        finally:
            shared.turns.leave()

    @staticmethod
    def _settle(batch: _Batch) -> None:
        """COMMIT the batch (or roll it back, if spoilt) and tell its writers."""
        try:
            if batch.broken is not None:
                raise batch.broken
            # On the loop thread: measured against a COMMIT on a thread of its own
            # (SQLite releases the GIL while it syncs), that was slower in latency and
            # throughput alike on 2 busy cores (the thread waits for the GIL, up to a
            # switch interval, while the loop runs Python).
            batch.transaction.commit()
        except BaseException as exc:
            if batch.transaction.is_active:
                try:
                    batch.transaction.rollback()
                except Exception:
                    log.exception("rolling back a failed batch failed")
            batch.done.set_exception(exc)
            # Retrieved by the writers; marked here so a batch without any left (all
            # cancelled) logs nothing about an unretrieved exception.
            batch.done.exception()
            return
        batch.done.set_result(None)

    async def flush(self) -> None:
        """Wait until every open batch is committed (before the engine is closed)."""
        held = self._shared.batch if self._shared is not None else None
        if held is not None and held.owner is self:
            self.schedule_commit(held)
        while self._committing:
            await asyncio.gather(*self._committing, return_exceptions=True)

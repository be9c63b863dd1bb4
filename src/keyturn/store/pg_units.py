"""Units of work on the PostgreSQL store: a task's ``deferrable`` writes inside ``together``
share one transaction, committed when the task leaves the block (one commit, one WAL flush).

The SQLite store gets the same from its group commit (``keyturn.store.group_commit``), where
every writer of the process shares one connection. Here each write has a connection of its
own, so a unit's open transaction is invisible to every other one, and its row locks (a new
task's unique key, the audit chain's advisory lock) make them wait. Two rules keep that safe:

- Only the unit's owner, and the tasks writing for it (``for_the_starter``: a synchronous
  call's worker, whose finish then commits with the answer's audit record), join it. Each
  write after the first runs in a ``SAVEPOINT``, so a failing one (a replayed nonce, a second
  active task) undoes only its own statements and raises its own error at once, as on SQLite.
- Any other write by a task that sees the unit open (its owner's or helper's writes that do
  not join, and every write of a task started inside the block, which inherits the unit: a
  worker's write-ahead) first commits the unit's transaction. So a write never waits on a
  lock its own unit holds, and a worker always finds the task row its starter's unit wrote.

What the block wrote is therefore durable when it is left, or earlier, never later: the
caller is answered after the unit's COMMIT, and a crash before it loses every write of the
unit together (a fleet target's end with its outcome's audit record). If the block raised,
the writes that succeeded are still committed (a failed call's audit record), and the block's
error wins. Imports: the group commit's ``helping``, SQLAlchemy's asyncio extension (for
types only) and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from keyturn.core import background
from keyturn.store.group_commit import helping

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

log = logging.getLogger(__name__)


class _Unit:
    """One task's unit of work: its transaction, opened by its first joining write."""

    def __init__(self) -> None:
        self.owner = asyncio.current_task()
        #: Tasks whose deferrable writes join too (``for_the_starter``).
        self.helpers: set[asyncio.Task[object]] = set()
        #: Joining writes, flushes and the end take turns on the one connection.
        self.turn = asyncio.Lock()
        self.conn: AsyncConnection | None = None
        self.transaction: AsyncTransaction | None = None
        #: The block was left: nothing joins any more.
        self.closed = False
        #: A COMMIT of the unit failed (maybe in another task's flush): the block's writes
        #: are not all kept, and leaving it raises this.
        self.lost: BaseException | None = None

    def joins(self) -> bool:
        task = asyncio.current_task()
        return not self.closed and (task is self.owner or task in self.helpers)

    async def leave(self, token: Token[_Unit | None]) -> None:
        """The owner leaves the block: nothing joins any more, the transaction is committed,
        and a COMMIT that failed (here or in another task's flush) is raised."""
        _UNIT.reset(token)
        self.closed = True
        # Shielded: an owner cancelled while it waits for the turn (a helper still writing
        # for it, a synchronous call's worker past the caller's deadline) or while it commits
        # still has its unit committed, never left open with its rows and locks.
        closing = asyncio.ensure_future(self._commit_in_turn())
        # asyncio keeps only weak references to tasks: one whose owner was cancelled would
        # otherwise be reachable from nothing but what it waits on.
        background.keep(closing, _CLOSING)
        await asyncio.shield(closing)
        if self.lost is not None:
            raise self.lost

    async def _commit_in_turn(self) -> None:
        """COMMIT once the turn is free; a failure is kept in ``lost`` (``leave`` raises it)."""
        async with self.turn:
            with contextlib.suppress(Exception):
                await self.commit()

    async def commit(self) -> None:
        """COMMIT the open transaction, if any (the caller holds the turn). Shielded: a
        writer cancelled while it commits the unit for its owner must not roll back what the
        owner will answer for; a failure is kept for the owner too (``lost``)."""
        await asyncio.shield(self._end(commit=True))

    async def abandon(self) -> None:
        """Roll the open transaction back (its first write failed: nobody else joined)."""
        await self._end(commit=False)

    async def _end(self, *, commit: bool) -> None:
        conn, transaction = self.conn, self.transaction
        self.conn = self.transaction = None
        if conn is None or transaction is None:
            return
        try:
            if commit:
                await transaction.commit()
            elif transaction.is_active:
                await transaction.rollback()
        except BaseException as exc:
            if commit:
                self.lost = self.lost or exc
            raise
        finally:
            await conn.close()


_UNIT: ContextVar[_Unit | None] = ContextVar("keyturn_pg_unit", default=None)
#: Units being committed on leaving, until they are (``_Unit.leave``).
_CLOSING: set[asyncio.Future[None]] = set()


class PgUnits:
    """Units of work on the writer engine of one PostgreSQL store."""

    def __init__(self, writer: AsyncEngine) -> None:
        self._writer = writer

    @asynccontextmanager
    async def together(self) -> AsyncIterator[None]:
        """This task's deferrable writes inside the block share one transaction, committed
        on leaving it. A failed COMMIT is raised on leaving; if the block raised, that error
        wins, once the transaction is settled."""
        unit = _Unit()
        token = _UNIT.set(unit)
        try:
            yield
        except BaseException:
            try:
                await unit.leave(token)
            except Exception:
                log.exception("committing a unit of work after its block failed")
            raise
        await unit.leave(token)

    @staticmethod
    def active() -> bool:
        """Whether this task sees a unit not yet left (its own, a starter's or, inherited,
        the one its starter was in when it started it)."""
        unit = _UNIT.get()
        return unit is not None and not unit.closed

    def for_the_starter(self) -> AbstractContextManager[None]:
        """Inside, this task's deferrable writes join the unit of the task that started it
        (see ``group_commit.for_the_starter``), until that unit is left."""
        return helping(_UNIT.get())

    @asynccontextmanager
    async def write(self, *, deferrable: bool) -> AsyncIterator[AsyncConnection | None]:
        """Inside a unit this task joins and for a ``deferrable`` write: the unit's
        connection, the write in a savepoint of its transaction (or as its first statements).
        Otherwise None, once any unit this task sees is committed: the caller writes on a
        connection of its own."""
        unit = _UNIT.get()
        if unit is None:
            yield None
            return
        if not (deferrable and unit.joins()):
            if unit.conn is not None:
                async with unit.turn:
                    await unit.commit()
            yield None
            return
        async with unit.turn:
            if unit.conn is None:
                unit.conn = conn = await self._writer.connect()
                try:
                    unit.transaction = await conn.begin()
                    yield conn
                except BaseException:
                    await unit.abandon()
                    raise
                return
            conn = unit.conn
            savepoint = await conn.begin_nested()
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    await savepoint.rollback()
                raise
            await savepoint.commit()

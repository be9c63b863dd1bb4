"""Plumbing shared by the ``SqlStore`` repositories: connections, transactions, sealing.

``SqlDatabase`` holds the engine, the ``SecretBox`` and the ``Clock``; each repository and the
audit log receive their store's one (composition, no shared base class). Reads run on a plain
connection, writes in one transaction each (``BEGIN IMMEDIATE`` on SQLite, so a transaction that
reads then writes never fails on a lock upgrade; the caller adds ``FOR UPDATE`` for PostgreSQL).
On SQLite the writes of calls in flight are committed in groups, one fsync for the lot, each
writer answered once its group is durable (``keyturn.store.group_commit``); on PostgreSQL a
unit of work's writes share one transaction (``keyturn.store.pg_units``).
Every SQLite connection gets WAL, ``synchronous=FULL``, foreign keys and a busy timeout.
``guarded`` translates SQLAlchemy errors at the store boundary: a database that cannot be reached
or did not answer in time (connection refused or lost, connect, statement or pool timeout)
becomes ``StoreUnavailable``, anything else ``InternalError``; ``Forward``
lets the store answer its ports' methods with its parts'. Imports: ``keyturn.core``, SQLAlchemy
and the standard library.
"""

from __future__ import annotations

import copy
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    ParamSpec,
    TypeAlias,
    TypeVar,
    overload,
)

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

from keyturn.core.errors import DomainError, InternalError, NotFound, StoreUnavailable
from keyturn.core.ports import Clock, SecretBox
from keyturn.store.group_commit import GroupCommit, for_the_starter, together
from keyturn.store.inline import InlineConnection, InlineEngine, sqlite_locked
from keyturn.store.pg_units import PgUnits
from keyturn.store.schema import tenants

log = logging.getLogger(__name__)
#: SQLite runs inline on the loop (``keyturn.store.inline``); PostgreSQL through asyncio.
# The asyncio extension costs ~8 MB of memory when imported: only PostgreSQL loads it.
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    Engine: TypeAlias = AsyncEngine | InlineEngine
    Connection: TypeAlias = AsyncConnection | InlineConnection
else:
    Engine = Connection = Any
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Part = TypeVar("Part")

_BEGIN_OPTION: Final = "keyturn_begin"
#: Applied to every SQLite connection. WAL + FULL: a commit is on disk when it returns.
SQLITE_PRAGMAS: Final = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Wiped (sealed) secrets are overwritten in the file rather than left in free space.
    "PRAGMA secure_delete=ON",
)


#: SQLAlchemy's errors for "the database is not there or did not answer in time": psycopg's
#: ``OperationalError`` (refused, lost, ``connect_timeout``, ``statement_timeout``, server
#: shutdown), a pool check-out timeout, a connection SQLAlchemy had to invalidate.
_UNAVAILABLE: Final = (sa_exc.OperationalError, sa_exc.TimeoutError, sa_exc.DisconnectionError)
#: The message of ``StoreUnavailable``: a client only learns to retry.
STORE_UNAVAILABLE: Final = "the store database is unavailable; retry later"


def store_error(exc: BaseException) -> DomainError:
    """The domain error for an exception raised by the database layer."""
    if isinstance(exc, sa_exc.DBAPIError) and isinstance(exc.orig, sqlite3.Error):
        # SQLite files every fault under OperationalError ("no such table" too): only a
        # database another process holds locked is "unavailable".
        if sqlite_locked(exc.orig):
            return StoreUnavailable(STORE_UNAVAILABLE)
        return InternalError("the store could not complete the operation")
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return StoreUnavailable(STORE_UNAVAILABLE)
    if isinstance(exc, OSError | TimeoutError):
        return StoreUnavailable(STORE_UNAVAILABLE)
    return InternalError("the store could not complete the operation")


def guarded(op: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let domain errors through; turn database errors into ``StoreUnavailable`` (not
    reachable, not in time) or a generic ``InternalError``."""

    @functools.wraps(op)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await op(*args, **kwargs)
        except DomainError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            # Parameters are hidden (hide_parameters) and only ever hold sealed values.
            error = store_error(exc)
            log.error("store operation %s failed: %s", op.__name__, _first_line(exc))
            raise error from exc

    return run


def _first_line(exc: BaseException) -> str:
    """The error's first line: SQLAlchemy appends the statement and a link, libpq its hints."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _on_sqlite_begin) instead of the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION)
    if mode == "NONE":
        return  # the shared read connection (keyturn.store.inline): statement autocommit
    connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def _configure_sqlite(engine: Engine) -> None:
    target = engine.sync_engine
    if not event.contains(target, "connect", _on_sqlite_connect):
        event.listen(target, "connect", _on_sqlite_connect)
        event.listen(target, "begin", _on_sqlite_begin)


def dialect_insert(dialect: str) -> Any:
    """The ``insert`` of a store dialect, which has ``on_conflict_do_update``."""
    # The dialect modules are imported here: the store's own dialect is loaded already, and a
    # SQLite server need not carry PostgreSQL's (about 2 MB).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    raise InternalError(f"unsupported store database: {dialect}")


def upsert_insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_update`` on this connection's dialect."""
    return dialect_insert(conn.dialect.name)(table)


def count_of(table: sa.Table, where: Sequence[sa.ColumnElement[bool]]) -> Any:
    """``(SELECT count(*) FROM table WHERE ...)``, never correlated to an enclosing query."""
    return (
        sa.select(sa.func.count())
        .select_from(table)
        .where(*where)
        .correlate(None)
        .scalar_subquery()
    )


class SqlDatabase:
    """The plumbing every part of one store shares, handed to each (composition): the
    engine, its one writer and write lock, the secret box and the clock, with read and write
    transactions. ``sealing_with`` gives the same plumbing under another box, so a part that
    seals otherwise (the audit log seals nothing; a rotation opens old and new keys) still
    queues on this store's writer."""

    def __init__(self, engine: Engine, box: SecretBox, clock: Clock) -> None:
        self.engine = engine
        self.box = box
        self.clock = clock
        self.sqlite = engine.dialect.name == "sqlite"
        if self.sqlite:
            _configure_sqlite(engine)
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        # Every read is one statement, and so is every non-durable write: on PostgreSQL they
        # need no transaction of their own (in READ COMMITTED each statement has its own
        # snapshot anyway), so they run in autocommit and skip a BEGIN and a ROLLBACK or
        # COMMIT round trip each. SQLite's inline reader runs without BEGIN already
        # (``keyturn.store.inline.NO_BEGIN``).
        self._single: Engine = (
            engine if self.sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # SQLite has one writer at a time: queue this process's writers here rather than
        # in the busy handler (which still covers other processes, e.g. the CLI). A second
        # writer connection would meet this one in SQLite's busy handler instead, which waits
        # on the event loop thread (the inline engine) and so could never let it finish.
        # The queue commits its writers in groups (one fsync for the calls in flight).
        self._group: GroupCommit | None = None
        self._units: PgUnits | None = None
        if self.sqlite:
            assert isinstance(self._writer, InlineEngine)
            self._group = GroupCommit(self._writer)
        else:
            # PostgreSQL has no group commit (each write its own connection and COMMIT), but
            # a unit of work's writes share one transaction (``keyturn.store.pg_units``).
            assert not isinstance(self._writer, InlineEngine)
            self._units = PgUnits(self._writer)

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"{type(self).__name__}({url!r})"

    def sealing_with(self, box: SecretBox) -> SqlDatabase:
        """This database (same engine, writer, write lock and clock) sealing with ``box``."""
        other = copy.copy(self)
        other.box = box
        return other

    async def close(self) -> None:
        if self._group is not None:
            await self._group.flush()
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        async with self._single.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(
        self, *, durable: bool = True, deferrable: bool = False
    ) -> AsyncIterator[Connection]:
        """One write transaction. ``durable=False`` is one statement of state worth nothing
        after a crash (a rate window, a token's last use): on SQLite it joins the group
        commit's batch without waiting for it; on PostgreSQL it runs in autocommit, its own
        transaction in one round trip, where a transaction would take four (BEGIN,
        ``SET LOCAL synchronous_commit``, the statement, COMMIT: about 0.45 ms more CPU per
        call; the commit's wait for the WAL flush costs no CPU). ``deferrable``: inside
        ``together`` the write is durable when the block is left, not on return (only for a
        write nothing in the same task relies on before then)."""
        if self._group is not None:
            async with self._group.write(durable=durable, deferrable=deferrable) as conn:
                yield conn
            return
        assert self._units is not None
        async with self._units.write(deferrable=deferrable) as joined:
            if joined is not None:
                yield joined
            elif not durable:
                async with self._single.connect() as conn:
                    yield conn
            else:
                async with self._writer.begin() as conn:
                    yield conn

    @asynccontextmanager
    async def together(self) -> AsyncIterator[None]:
        """This task's writes inside the block are durable together when it is left (SQLite:
        usually one group commit; see ``group_commit.together``; PostgreSQL: one transaction,
        see ``pg_units``). A failed commit is raised on leaving, as ``guarded`` would."""
        unit = together() if self._units is None else self._units.together()
        try:
            async with unit:
                yield
        except (SQLAlchemyError, OSError) as exc:
            log.error("store commit failed: %s", _first_line(exc))
            raise store_error(exc) from exc

    def in_unit(self) -> bool:
        """Whether this task is inside a unit of work on PostgreSQL (its own or, inherited,
        its starter's): its writes join the unit or commit it first."""
        return self._units is not None and self._units.active()

    def for_the_starter(self) -> AbstractContextManager[None]:
        """This task's deferrable writes inside join the unit of the task that started it
        (see ``group_commit.for_the_starter`` and ``pg_units``)."""
        return for_the_starter() if self._units is None else self._units.for_the_starter()

    def seal(self, plaintext: str, context: str) -> str:
        return self.box.seal(plaintext, context=context)

    def unseal(self, token: str, context: str) -> str:
        return self.box.unseal(token, context=context)

    def now(self) -> datetime:
        return self.clock.now()

    async def require_tenant(self, conn: Connection, tenant_id: str) -> None:
        found = await conn.scalar(sa.select(tenants.c.id).where(tenants.c.id == tenant_id))
        if found is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")


class Forward(Generic[Part, P, T]):
    """A method of a composite that is one of its parts': ``get_task =
    Forward("tasks", SqlTaskRepo.get_task)`` answers ``store.get_task`` with
    ``store.tasks.get_task``, typed as the part's method (so the composite still satisfies
    the port protocols the parts implement)."""

    def __init__(self, part: str, method: Callable[Concatenate[Part, P], T]) -> None:
        self._part = part
        self._name = method.__name__

    @overload
    def __get__(self, owner: None, cls: type) -> Forward[Part, P, T]: ...

    @overload
    def __get__(self, owner: object, cls: type | None = None) -> Callable[P, T]: ...

    def __get__(self, owner: object, cls: type | None = None) -> Any:
        if owner is None:
            return self
        return getattr(getattr(owner, self._part), self._name)

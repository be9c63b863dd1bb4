"""Run SQLite on the event loop thread, behind the slice of SQLAlchemy's asyncio API the store
uses (``connect``, ``begin``, ``execute``, ``scalar``, ``execution_options``, ``dispose``).

Why not aiosqlite: every statement through it hops to a worker thread and back, measured at
about 820 µs for a primary-key read on this machine against about 35 µs for the same read on
the calling thread. A local SQLite read is cheaper than any hop, so the store runs it inline; a
commit blocks the loop for its fsync (WAL, ``synchronous=FULL``: about 0.1-0.5 ms), which is
the price of acknowledging only what is on disk. PostgreSQL keeps the real asyncio engine.
Results that return rows are buffered before they are handed back, so they can be consumed
anywhere. Imports: SQLAlchemy and the standard library.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy

T = TypeVar("T")

#: Told of each statement run on the driver directly (its kind and seconds): the store's
#: statement timer (``keyturn.store.observe``), which SQLAlchemy's events feed otherwise.
StatementTimer = Callable[[str, float], None]

#: Seconds a writer waits for another process's write lock (the store's SQLite busy timeout).
LOCK_PATIENCE: Final = 5.0
#: Seconds between tries for that lock: short, since another process holds it for one group
#: commit (one loop iteration and an fsync), then doubling to the last.
_FIRST_POLL: Final = 0.0001
_LAST_POLL: Final = 0.001


#: SQLite's primary result codes for "another connection holds the lock", and their messages.
_LOCK_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_LOCK_MESSAGES: Final = frozenset({"database is locked", "database table is locked"})


def sqlite_locked(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (``SQLITE_BUSY``, or ``SQLITE_LOCKED``
    for a table): another connection holds the lock. Told by the error's result code (its
    low byte: the extended codes such as ``SQLITE_BUSY_SNAPSHOT`` included); an error made
    without one (not by SQLite itself) by its whole message, never by a word in it."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return str(exc) in _LOCK_MESSAGES
    return code & 0xFF in _LOCK_CODES


def _translated(statement: str, values: Sequence[Any] | None, exc: sqlite3.Error) -> Exception:
    """A driver error as the SQLAlchemy error SQLAlchemy itself raises for it (the matching
    ``DBAPIError`` subclass), its parameters hidden."""
    return sa_exc.DBAPIError.instance(statement, values, exc, sqlite3.Error, hide_parameters=True)


class InlineConnection:
    """A synchronous connection that answers the awaitable calls of ``AsyncConnection``."""

    def __init__(self, conn: sa.Connection, timers: list[StatementTimer] | None = None) -> None:
        self._conn = conn
        self._timers = timers if timers is not None else []

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    def close(self) -> None:
        self._conn.close()

    def driver_connection(self) -> Any:
        """The DBAPI (``sqlite3``) connection underneath, for what must run outside
        SQLAlchemy's transactions."""
        return self._conn.connection.driver_connection

    def transaction(self) -> sa.RootTransaction:
        """A transaction on this connection: committed on success, rolled back on error."""
        return self._conn.begin()

    async def write_transaction(self) -> sa.RootTransaction:
        """A write transaction (``BEGIN IMMEDIATE``), waiting on the event loop while another
        process (a ``--workers`` sibling, the CLI) holds the file's write lock.

        SQLite's own busy handler would wait here by sleeping on the loop thread, 1 to 100 ms
        at a time: measured under ``--workers 2``, the two workers then took turns, together
        never using more than one core. Instead this connection's busy timeout is 0 and a
        refused BEGIN is retried after a short asynchronous sleep, for as long as the busy
        timeout allowed (then SQLite's "database is locked" is raised, a store error)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_PATIENCE
        delay = _FIRST_POLL
        while True:
            try:
                return self._conn.begin()
            except sa_exc.OperationalError as exc:
                if not sqlite_locked(exc.orig) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_POLL)

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        result = self._conn.execute(statement, parameters)
        if result.returns_rows:
            # Fetch every row now, so the statement is over when this returns: an unread
            # SELECT would hold the reader's snapshot (later reads would not see new
            # commits), an unread RETURNING would keep the writer's COMMIT from finishing.
            # SQLAlchemy's own fully buffered strategy (what it uses for rows that must
            # outlive the conversation): every row API stays, at about 1 us, where a
            # ``freeze()`` copy cost 19 us a statement, 6% of a signed read's CPU.
            result.cursor_strategy = FullyBufferedCursorFetchStrategy(result.cursor)
        return result

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.scalar(statement, parameters)

    def run_plain(self, statement: str) -> None:
        """Run a statement with no parameters and no rows (``SAVEPOINT``, ``RELEASE``) on the
        driver's connection: SQLAlchemy tracks no such statement, and its execution path
        costs about 4 us a statement here against 0.5 us. A failure is raised as SQLAlchemy's
        error for it, as every other statement's is."""
        try:
            self.driver_connection().execute(statement)
        except sqlite3.Error as exc:
            raise _translated(statement, None, exc) from exc

    def run_driver(self, text: str, values: Sequence[Any], kind: str) -> list[Any]:
        """Run a compiled statement's ``text`` with its converted ``values`` on the driver's
        connection, in this connection's transaction (``keyturn.store.hot_path``): its rows,
        every one read (see ``execute``). A failure is raised as SQLAlchemy's error for it,
        parameters hidden; the statement is timed as SQLAlchemy's events would time it."""
        started = time.perf_counter()
        try:
            rows: list[Any] = self.driver_connection().execute(text, values).fetchall()
        except sqlite3.Error as exc:
            raise _translated(text, values, exc) from exc
        for timer in self._timers:
            timer(kind, time.perf_counter() - started)
        return rows

    async def exec_driver_sql(self, statement: str) -> CursorResult[Any]:
        return self._conn.exec_driver_sql(statement)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._conn, *args)


#: Execution option telling the SQLite ``begin`` hook to emit no BEGIN: each statement on the
#: shared read connection runs on its own (SQLite autocommit), holding no snapshot between calls.
NO_BEGIN: Final = {"keyturn_begin": "NONE"}


class InlineEngine:
    """A synchronous ``Engine`` with the asyncio engine's context managers.

    Reads share one long-lived connection: no pool check-out, BEGIN or ROLLBACK per call
    (together most of a small read's cost). Every store read is a single statement, so
    SQLite's per-statement atomicity is all the isolation it needs. Writes share another
    long-lived connection, one real transaction at a time.
    """

    def __init__(self, engine: sa.Engine, timers: list[StatementTimer] | None = None) -> None:
        self.sync_engine = engine
        self._reader: InlineConnection | None = None
        self._writer: InlineConnection | None = None
        #: Shared with the engines made from this one (``execution_options``), like
        #: SQLAlchemy's event listeners.
        self._timers: list[StatementTimer] = timers if timers is not None else []

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @property
    def url(self) -> sa.URL:
        return self.sync_engine.url

    def execution_options(self, **options: Any) -> InlineEngine:
        return InlineEngine(self.sync_engine.execution_options(**options), self._timers)

    def time_statements(self, timer: StatementTimer) -> None:
        """Time the statements run on the driver directly (``InlineConnection.run_driver``)
        of this engine and of every engine made from it."""
        self._timers.append(timer)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[InlineConnection]:
        if self._reader is None:
            conn = self.sync_engine.connect()
            conn.execution_options(**NO_BEGIN)
            self._reader = InlineConnection(conn, self._timers)
        yield self._reader

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[InlineConnection]:
        """A write transaction on the writer connection (the store's own go through
        ``GroupCommit``, which shares one among the writers in flight)."""
        writer = self.writer()
        with await writer.write_transaction():
            yield writer

    def writer(self) -> InlineConnection:
        """The one long-lived write connection: the store serializes its writers, and a pool
        check-out (with its reset-on-return ROLLBACK) per transaction is pure overhead."""
        if self._writer is None:
            self._writer = InlineConnection(self.sync_engine.connect(), self._timers)
            # Its transactions wait for another process's lock on the loop instead
            # (``InlineConnection.write_transaction``).
            self._writer.driver_connection().execute("PRAGMA busy_timeout=0")
        return self._writer

    async def dispose(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        self.sync_engine.dispose()

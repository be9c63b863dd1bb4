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

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Dialect

T = TypeVar("T")


class InlineConnection:
    """A synchronous connection that answers the awaitable calls of ``AsyncConnection``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

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

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        result = self._conn.execute(statement, parameters)
        if result.returns_rows:
            # Fetch everything now: the cursor belongs to this thread and this connection.
            # The buffered copy has every row API; rowcount and inserted_primary_key, which
            # only row-less statements use, stay on the unbuffered path.
            return cast("CursorResult[Any]", result.freeze()())
        return result

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._conn.scalar(statement, parameters)

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

    def __init__(self, engine: sa.Engine) -> None:
        self.sync_engine = engine
        self._reader: InlineConnection | None = None
        self._writer: InlineConnection | None = None

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @property
    def url(self) -> sa.URL:
        return self.sync_engine.url

    def execution_options(self, **options: Any) -> InlineEngine:
        return InlineEngine(self.sync_engine.execution_options(**options))

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[InlineConnection]:
        if self._reader is None:
            conn = self.sync_engine.connect()
            conn.execution_options(**NO_BEGIN)
            self._reader = InlineConnection(conn)
        yield self._reader

    @asynccontextmanager
    async def begin(self, *, durable: bool = True) -> AsyncIterator[InlineConnection]:
        """A write transaction. ``durable=False`` is for state worth nothing after a crash
        (rate-limit windows): its commit does not wait for the disk (``synchronous=NORMAL``
        for this one transaction; WAL keeps the file consistent either way)."""
        writer = self.writer()
        if durable:
            with writer.transaction():
                yield writer
            return
        # SQLite refuses to change the level inside a transaction, and SQLAlchemy would begin
        # one for any statement: set it on the driver's connection, outside.
        raw = writer.driver_connection()
        raw.execute("PRAGMA synchronous=NORMAL")
        try:
            with writer.transaction():
                yield writer
        finally:
            raw.execute("PRAGMA synchronous=FULL")

    def writer(self) -> InlineConnection:
        """The one long-lived write connection: the store serializes its writers, and a pool
        check-out (with its reset-on-return ROLLBACK) per transaction is pure overhead."""
        if self._writer is None:
            self._writer = InlineConnection(self.sync_engine.connect())
        return self._writer

    async def dispose(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        self.sync_engine.dispose()

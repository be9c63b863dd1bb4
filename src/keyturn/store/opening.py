"""Opening the store: the default SQLite URL, the SQLAlchemy engine, and migrate-then-open.

``open_store`` migrates the database to the newest schema (one node at a time on PostgreSQL,
under ``keyturn.store.startup``'s lock) and opens a ``SqlStore`` on it; ``open_engine`` builds the
engine alone (SQLite inline on the event loop, PostgreSQL through SQLAlchemy's asyncio engine on
psycopg 3, every wait bounded); ``sqlite_url`` is the embedded default under the data
directory, whose database file is created with mode 0600 before SQLite opens it. A failure is
reported as a domain error that names no detail of the database. Imports: ``keyturn.core``,
SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Final

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from keyturn.core.errors import InternalError, StoreUnavailable
from keyturn.core.ports import Clock, SecretBox
from keyturn.store.base import Engine, store_error
from keyturn.store.inline import InlineEngine
from keyturn.store.migrate import DEFAULT_TIMEOUT, connect_args, ensure_schema, store_url, sync_url
from keyturn.store.sql import SqlStore
from keyturn.store.startup import startup_lock

DB_FILE: Final = "keyturn.db"


def sqlite_url(data_dir: Path) -> str:
    """The default store URL: ``sqlite:///<data_dir>/keyturn.db``."""
    return f"sqlite:///{data_dir / DB_FILE}"


def _create_sqlite_file(url: str) -> None:
    """Create a missing SQLite database file with mode 0600; SQLite gives its ``-wal`` and
    ``-shm`` files the same mode."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return  # it exists, or SQLite will report why it cannot be opened


def _prepare(url: str, timeout: float) -> None:
    _create_sqlite_file(url)
    ensure_schema(url, timeout)


def open_engine(url: str, timeout: float = DEFAULT_TIMEOUT) -> Engine:
    """SQLite runs inline on the event loop (see ``keyturn.store.inline``); PostgreSQL through
    SQLAlchemy's asyncio engine on psycopg 3, every wait bounded by ``timeout`` seconds:
    connecting, each statement, a pool check-out; a pooled connection idle for a second is
    pinged before use (``idle_ping``), so one the server dropped (a restart, a failover) is
    replaced instead of failing a call."""
    url = store_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return InlineEngine(create_engine(sync_url(url), hide_parameters=True))
    from sqlalchemy.ext.asyncio import create_async_engine

    from keyturn.store.idle_ping import ping_when_idle

    engine = create_async_engine(
        url,
        hide_parameters=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=timeout,
        # Connections older than this are replaced: a failover's new primary gets them all.
        pool_recycle=1800,
        connect_args=connect_args(url, timeout),
    )
    ping_when_idle(engine)
    return engine


async def open_store(
    url: str, box: SecretBox, clock: Clock, *, timeout: float = DEFAULT_TIMEOUT
) -> SqlStore:
    """Migrate the database at ``url`` to the newest schema (one node at a time on PostgreSQL:
    ``keyturn.store.startup``) and open a store on it."""
    url = store_url(url)
    try:
        async with startup_lock(url, timeout):
            await asyncio.to_thread(_prepare, url, timeout)
        engine = open_engine(url, timeout)
    except ArgumentError:
        raise InternalError("the store database URL is not valid") from None
    except RuntimeError as exc:  # the migration child failed; its output is in the message
        raise InternalError(str(exc)) from None
    except SQLAlchemyError as exc:
        error = store_error(exc)
        if isinstance(error, StoreUnavailable):
            raise StoreUnavailable("the store database could not be reached") from exc
        raise InternalError("the store database could not be opened or migrated") from exc
    return SqlStore(engine, box, clock)

"""One node at a time through start-up on a shared PostgreSQL store.

Several keyturn nodes may start at once on one empty database: each would run the migrations
and reconcile the inventory (and create the first administrator key) at the same time, and
Alembic's DDL is not safe to run twice concurrently. ``startup_lock`` takes a session-level
PostgreSQL advisory lock (``pg_advisory_lock``, key ``keyturn.store.migrate.STARTUP_LOCK``) on a
connection of its own before migrating and holds it until the caller has reconciled: the first
node migrates and reconciles, the others wait, then find the schema at head and the inventory
already in place. The lock goes with the session, so a node that dies holding it frees it.
SQLite needs none: its migrations run in one transaction under the database file's write lock.
Imports: ``keyturn.core``, SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from keyturn.core.errors import StoreUnavailable
from keyturn.store.migrate import STARTUP_LOCK, connect_args, store_url, sync_url

log = logging.getLogger(__name__)
#: Store URLs whose lock the current task holds (``keyturn serve``'s ``open_store`` runs inside
#: it, and a second session would wait for the first forever). A context variable, not a
#: global: a concurrent task of the same process must still wait its turn.
_HELD: ContextVar[frozenset[str]] = ContextVar("keyturn_startup_locks", default=frozenset())


@asynccontextmanager
async def startup_lock(url: str, timeout: float) -> AsyncIterator[None]:
    """Hold the start-up lock of the store at ``url`` (PostgreSQL; nothing to hold on SQLite).
    Connecting is bounded by ``timeout``; waiting for another node is not (it is migrating)."""
    url = store_url(url)
    target = sync_url(url)
    if target.get_backend_name() != "postgresql" or url in _HELD.get():
        yield  # re-entrant: ``open_store`` takes it too, inside ``keyturn serve``'s
        return
    engine = sa.create_engine(
        target,
        poolclass=NullPool,
        hide_parameters=True,
        connect_args=connect_args(url, timeout, statements=False),
    )
    try:
        conn = await asyncio.to_thread(engine.connect)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreUnavailable("the store database could not be reached") from exc
    try:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await asyncio.to_thread(_try_lock, conn)
        if not got:
            log.info("another node is migrating the store: waiting for it")
            await asyncio.to_thread(_lock, conn)
        held = _HELD.set(_HELD.get() | {url})
        try:
            yield
        finally:
            _HELD.reset(held)
            await asyncio.to_thread(_unlock, conn)
    finally:
        await asyncio.to_thread(conn.close)
        engine.dispose()


def _try_lock(conn: sa.Connection) -> bool:
    return bool(conn.scalar(sa.select(sa.func.pg_try_advisory_lock(STARTUP_LOCK))))


def _lock(conn: sa.Connection) -> None:
    conn.execute(sa.select(sa.func.pg_advisory_lock(STARTUP_LOCK)))


def _unlock(conn: sa.Connection) -> None:
    # A lost connection has released the lock with its session already.
    with contextlib.suppress(SQLAlchemyError):
        conn.execute(sa.select(sa.func.pg_advisory_unlock(STARTUP_LOCK)))

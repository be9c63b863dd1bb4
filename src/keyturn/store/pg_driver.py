"""The store's hot statements on PostgreSQL, run on psycopg itself.

SQLite's hot statements run on its driver (``keyturn.store.hot_path``); this is the same for
the asyncio engine on psycopg 3. Through SQLAlchemy, each statement from its compiled cache
still pays for the execution machinery and the greenlet switch into the synchronous core:
measured on one connection, a primary-key SELECT took 128-131 us of CPU that way against 84-88
us on psycopg. A store read or write makes a few such statements, so a node on PostgreSQL
spends that much less CPU on each.

Here a statement compiled once for psycopg's ``format`` paramstyle (its text, parameter order
and converters, as ``hot_path`` compiles it: the same casts SQLAlchemy renders, so the server
sees the same statement) runs on the connection's psycopg connection, in the transaction the
SQLAlchemy connection holds. Only where that transaction is unambiguous: the SQLAlchemy
connection is in a transaction (``begin``, a unit of work, a savepoint), or psycopg is in
autocommit (the store's single-statement engine); otherwise the caller runs the statement
through SQLAlchemy, which begins one. A driver error is raised as the SQLAlchemy error
SQLAlchemy raises for it (the matching ``DBAPIError`` subclass, parameters hidden); a
connection that broke is invalidated first, so the pool replaces it and the store reports
itself unavailable (``store_error``). Statements are timed into the timers
``observe_statements`` registers for the engine's dialect, as SQLAlchemy's cursor events time
the rest. Imports: SQLAlchemy, psycopg, this package's statement timer type and the standard
library.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from keyturn.store.inline import StatementTimer

#: What hot statements are compiled with: SQLAlchemy's psycopg dialect with positional
#: (``%s``) parameters, so a call's values are a list in the compiled order.
DIALECT: Final[Dialect] = psycopg_dialect.dialect(  # type: ignore[no-untyped-call]
    paramstyle="format"
)

#: The statement timers of each engine's dialect (``observe_statements``).
_TIMERS: weakref.WeakKeyDictionary[Dialect, list[StatementTimer]] = weakref.WeakKeyDictionary()


def time_statements(dialect: Dialect, timer: StatementTimer) -> None:
    """Report each hot statement run on connections of ``dialect`` to ``timer``."""
    _TIMERS.setdefault(dialect, []).append(timer)


async def run(conn: Any, text: str, values: Sequence[Any], kind: str) -> list[Any] | None:
    """The rows of ``text`` with ``values`` run on ``conn``'s psycopg connection, in its
    transaction (every row read; [] for a statement that returns none); None when the caller
    must run it through SQLAlchemy: ``conn`` is not SQLAlchemy's asyncio connection, or it
    holds no transaction and psycopg is not in autocommit (SQLAlchemy begins one)."""
    if not isinstance(conn, AsyncConnection):
        return None
    sync = conn.sync_connection
    if sync is None or sync.closed or sync.invalidated:
        return None  # SQLAlchemy reconnects or reports it
    # An open, valid connection holds its pooled connection: reading it does no I/O, where
    # ``get_raw_connection`` spawns a greenlet for it (measured 9.2 us against 0.4 us).
    raw = sync.connection.driver_connection
    if not isinstance(raw, psycopg.AsyncConnection):
        return None  # not psycopg's asyncio connection after all: SQLAlchemy runs it
    if not (raw.autocommit or conn.in_transaction()):
        return None
    started = time.perf_counter()
    try:
        cursor = await raw.execute(text, values)
        rows: list[Any] = await cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as exc:
        broken = raw.closed or raw.broken
        if broken:
            await conn.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            text,
            values,
            exc,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=broken,
            dialect=conn.dialect,
        ) from exc
    elapsed = time.perf_counter() - started
    for timer in _TIMERS.get(conn.dialect, ()):
        timer(kind, elapsed)
    return rows

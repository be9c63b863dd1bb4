"""Rate-limit windows: the ``RateRepo`` part of ``SqlStore``.

Each row counts the calls accepted for one (tenant, action) in one wall-clock second, for every
process on the store. One statement decides, atomically on SQLite (3.35+) and PostgreSQL alike:
``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1 WHERE count < limit RETURNING count``.
A row comes back only when the call was counted, so all nodes together never count more than
the limit in one window (a window's edge is where the nodes' clocks differ, worth one call).
A refused call writes nothing. The counters are worth nothing after a crash
(``SqlDatabase.write(durable=False)``): on SQLite a count joins the group commit's open batch
(or opens one) and returns without waiting for the disk, tens of microseconds; on PostgreSQL
it is one autocommit statement, one round trip. Rows of past seconds are purged by
``purge_rate_windows``.
Imports: SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import sqlalchemy as sa

from keyturn.store import hot_path
from keyturn.store.base import SqlDatabase, dialect_insert, guarded
from keyturn.store.schema import rate_windows

#: Action names are the routed, vendor-qualified ones (never longer), cut to the column.
_ACTION_WIDTH: Final = 128
_PURGE: Final = sa.delete(rate_windows).where(rate_windows.c.second < sa.bindparam("before"))


def _count_statement(insert: Any) -> Any:
    """The increment-and-check, built once per dialect (a hot path: one per accepted call)."""
    stmt = insert(rate_windows).values(
        tenant_id=sa.bindparam("tenant_id"),
        action=sa.bindparam("action"),
        second=sa.bindparam("second"),
        count=1,
    )
    return stmt.on_conflict_do_update(
        index_elements=[rate_windows.c.tenant_id, rate_windows.c.action, rate_windows.c.second],
        set_={"count": rate_windows.c["count"] + 1},
        where=rate_windows.c["count"] < sa.bindparam("limit"),
    ).returning(rate_windows.c["count"])


@functools.cache
def _count_for(dialect: str) -> Any:
    """The increment-and-check of ``dialect``, built on first use."""
    return _count_statement(dialect_insert(dialect))


class SqlRates:
    """Per-second call counters in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def count_call(self, tenant_id: str, action: str, second: int, limit: int) -> bool:
        if limit <= 0:
            return False
        params = {
            "tenant_id": tenant_id,
            "action": action[:_ACTION_WIDTH],
            "second": second,
            "limit": limit,
        }
        async with self._db.write(durable=False) as conn:
            counted = await hot_path.first_row(conn, _count_for(conn.dialect.name), params)
            return counted is not None

    @guarded
    async def purge_rate_windows(self, before: int) -> int:
        async with self._db.write(durable=False) as conn:
            result = await conn.execute(_PURGE, {"before": before})
            return int(result.rowcount or 0)

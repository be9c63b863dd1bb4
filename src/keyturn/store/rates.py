"""Rate-limit windows: the ``RateRepo`` part of ``SqlStore``.

Each row counts the calls accepted for one (tenant, action) in one wall-clock second, for every
process on the store. One statement decides, atomically on SQLite (3.35+) and PostgreSQL alike:
``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1 WHERE count < limit RETURNING count``.
A row comes back only when the call was counted, so all nodes together never count more than
the limit in one window (a window's edge is where the nodes' clocks differ, worth one call).
A refused call writes nothing. Rows of past seconds are purged by ``purge_rate_windows``.
Imports: SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from keyturn.store.base import SqlDatabase, guarded, upsert_insert
from keyturn.store.schema import rate_windows

#: Action names are the routed, vendor-qualified ones (never longer), cut to the column.
_ACTION_WIDTH: Final = 128
_PURGE: Final = sa.delete(rate_windows).where(rate_windows.c.second < sa.bindparam("before"))


class SqlRates:
    """Per-second call counters in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def count_call(self, tenant_id: str, action: str, second: int, limit: int) -> bool:
        if limit <= 0:
            return False
        async with self._db.write() as conn:
            stmt = upsert_insert(conn, rate_windows).values(
                tenant_id=tenant_id, action=action[:_ACTION_WIDTH], second=second, count=1
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[
                    rate_windows.c.tenant_id,
                    rate_windows.c.action,
                    rate_windows.c.second,
                ],
                set_={"count": rate_windows.c["count"] + 1},
                where=rate_windows.c["count"] < limit,
            ).returning(rate_windows.c["count"])
            result = await conn.execute(stmt)
            return result.first() is not None

    @guarded
    async def purge_rate_windows(self, before: int) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(_PURGE, {"before": before})
            return int(result.rowcount or 0)

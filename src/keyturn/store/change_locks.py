"""The lock after wrong old passwords: the ``ChangeLockRepo`` part of ``SqlStore``.

One row per account that met a wrong old password: ``(sha256(key), failures, locked_until)``.
Counting an attempt is one atomic upsert that counts only while the account is not locked and
fewer than the maximum attempts are counted, so however many nodes evaluate old passwords of
one account at once, at most that many are evaluated before the lock. The rows are the store's,
so a lock holds on every node and across restarts. Imports: SQLAlchemy, this package and the
standard library.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from keyturn.store.base import SqlDatabase, dialect_insert, guarded
from keyturn.store.schema import change_locks

_ROW = change_locks.c.key == sa.bindparam("digest")


@functools.cache
def _count_for(dialect: str) -> Any:
    """The count of one attempt, built once per dialect with bound values."""
    column = change_locks.c
    stmt = dialect_insert(dialect)(change_locks).values(
        key=sa.bindparam("digest"), failures=1, locked_until=None
    )
    # An expired lock is lifted here; a lock sets failures to 0, so the count starts over with
    # this attempt.
    return stmt.on_conflict_do_update(
        index_elements=[column.key],
        set_={"failures": column.failures + 1, "locked_until": None},
        where=sa.and_(
            sa.or_(column.locked_until.is_(None), column.locked_until <= sa.bindparam("now")),
            column.failures < sa.bindparam("max_failures"),
        ),
    ).returning(column.failures)


def lock_key(key: str) -> str:
    """A fixed-width stand-in for an account's key (account names are the caller's)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SqlChangeLocks:
    """Wrong-old-password counts and locks in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def count_attempt(self, key: str, *, max_failures: int, now: datetime) -> bool:
        params = {"digest": lock_key(key), "now": now, "max_failures": max_failures}
        async with self._db.write() as conn:
            counted = await conn.execute(_count_for(conn.dialect.name), params)
            return counted.first() is not None

    @guarded
    async def missed_attempt(
        self, key: str, *, max_failures: int, now: datetime, lock_until: datetime
    ) -> int:
        digest = lock_key(key)
        async with self._db.write() as conn:
            query = sa.select(change_locks.c.failures, change_locks.c.locked_until).where(_ROW)
            if not self._db.sqlite:
                query = query.with_for_update()
            row = (await conn.execute(query, {"digest": digest})).first()
            if row is None:
                return max_failures  # cleared meanwhile by a right old password
            if row.locked_until is not None and row.locked_until > now:
                return 0
            if row.failures >= max_failures:
                await conn.execute(
                    sa.update(change_locks).where(_ROW).values(failures=0, locked_until=lock_until),
                    {"digest": digest},
                )
                return 0
            return max_failures - int(row.failures)

    @guarded
    async def refund_attempt(self, key: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(change_locks)
                .where(_ROW, change_locks.c.failures > 0)
                .values(failures=change_locks.c.failures - 1),
                {"digest": lock_key(key)},
            )

    @guarded
    async def clear_attempts(self, key: str, *, now: datetime) -> None:
        column = change_locks.c
        async with self._db.write() as conn:
            # No lock in force: the row goes. A lock in force already holds failures at 0.
            await conn.execute(
                sa.delete(change_locks).where(
                    _ROW, sa.or_(column.locked_until.is_(None), column.locked_until <= now)
                ),
                {"digest": lock_key(key)},
            )

    @guarded
    async def locked_until(self, key: str, *, now: datetime) -> datetime | None:
        async with self._db.read() as conn:
            until = await conn.scalar(
                sa.select(change_locks.c.locked_until).where(_ROW), {"digest": lock_key(key)}
            )
        if until is None or until <= now:
            return None
        return until  # type: ignore[no-any-return]

"""The replay memory: the ``ReplayRepo`` part of ``SqlStore``.

A verified request's nonce (or signature) is stored as ``(scope, sha256(nonce), expires_at)``
until it expires, so a captured request stays refused after a restart and on every process
that shares the store. One statement decides, atomically on SQLite and PostgreSQL alike: an
insert that, on a conflict, only takes over a row that has already expired. The row it returns
(none on a live conflict) says whether the nonce was new. Expired rows are deleted by
``purge_nonces``. Imports: SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from keyturn.store import hot_path
from keyturn.store.base import SqlDatabase, dialect_insert, guarded
from keyturn.store.schema import replay_nonces

_PURGE = sa.delete(replay_nonces).where(replay_nonces.c.expires_at <= sa.bindparam("now"))


@functools.cache
def _remember_for(dialect: str) -> Any:
    """The insert-or-take-over-an-expired-row of ``dialect``, built once (one per signed change:
    building it cost about as much CPU as running it)."""
    stmt = dialect_insert(dialect)(replay_nonces).values(
        scope=sa.bindparam("scope"),
        digest=sa.bindparam("digest"),
        expires_at=sa.bindparam("expires_at"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[replay_nonces.c.scope, replay_nonces.c.digest],
        set_={"expires_at": stmt.excluded.expires_at},
        where=replay_nonces.c.expires_at <= sa.bindparam("now"),
    ).returning(replay_nonces.c.digest)


def nonce_digest(nonce: str) -> str:
    """A fixed-width stand-in for a nonce of any length (clients choose nonces)."""
    return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()


class SqlReplay:
    """Nonces of verified requests in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def remember_nonce(
        self, scope: str, nonce: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        # Deferrable: the gate makes it durable with the change's "started" record.
        async with self._db.write(deferrable=True) as conn:
            params = {
                "scope": scope[:128],
                "digest": nonce_digest(nonce),
                "expires_at": expires_at,
                "now": now,
            }
            # RETURNING, not the row count: psycopg's asyncio cursor reports -1 for an INSERT
            # through SQLAlchemy, which would read as "new" and let every replay through.
            new = await hot_path.first_row(conn, _remember_for(conn.dialect.name), params)
            return new is not None

    @guarded
    async def forget_nonce(self, scope: str, nonce: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.delete(replay_nonces).where(
                    replay_nonces.c.scope == scope[:128],
                    replay_nonces.c.digest == nonce_digest(nonce),
                )
            )

    @guarded
    async def purge_nonces(self, now: datetime) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(_PURGE, {"now": now})
            return int(result.rowcount or 0)

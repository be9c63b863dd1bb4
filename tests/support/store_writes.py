"""A scratch table and writers for the store's write-path tests (the group commit's and the
unit of work's contract tests): ``insert`` a row in a write transaction of its own, optionally
failing inside it, and ``commits_of`` to count a database's COMMITs (savepoints are not)."""

from __future__ import annotations

import sqlalchemy as sa

from keyturn.store.base import SqlDatabase

ITEMS = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("note", sa.String(20), nullable=False, server_default=""),
)


class Boom(Exception):
    """A writer's own failure, raised inside its transaction."""


async def insert(
    database: SqlDatabase, n: int, *, fail: bool = False, deferrable: bool = False
) -> None:
    async with database.write(deferrable=deferrable) as conn:
        await conn.execute(ITEMS.insert().values(n=n))
        if fail:
            raise Boom()


def commits_of(database: SqlDatabase) -> list[int]:
    """A list that grows by one at each COMMIT of ``database``."""
    seen: list[int] = []
    sa.event.listen(database.engine.sync_engine, "commit", lambda _conn: seen.append(1))
    return seen

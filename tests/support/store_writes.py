"""Scratch tables and writers for the store's write-path tests (the group commit's and the
unit of work's contract tests): ``insert`` a row in a write transaction of its own, optionally
failing inside it, and ``commits_of`` to count a database's COMMITs (savepoints are not); and
``EVENTS`` with its counting upsert for the hot statements' tests, on SQLite and psycopg."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from keyturn.store.base import SqlDatabase
from keyturn.store.schema import UtcDateTime

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


#: A timestamped counter: what the hot statements store and read (``keyturn.store.hot_path``).
EVENTS = sa.Table(
    "events",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("hits", sa.Integer, nullable=False),
)
#: Not UTC, so the stored instant is checked, not its spelling.
AT = datetime(2026, 12, 6, 23, 30, 1, 250, tzinfo=timezone(timedelta(hours=8)))


def counting(insert: Any) -> Any:
    """``EVENTS``' upsert made with a dialect's ``insert``: a new row counts 1 (a value bound in
    the statement itself), an existing one one more; the count is returned."""
    return (
        insert(EVENTS)
        .values(id=sa.bindparam("id"), at=sa.bindparam("at"), hits=1)
        .on_conflict_do_update(index_elements=[EVENTS.c.id], set_={"hits": EVENTS.c.hits + 1})
        .returning(EVENTS.c.hits)
    )

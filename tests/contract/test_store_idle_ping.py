"""The PostgreSQL store's pool pings a connection at check-out only after it sat idle
(``keyturn.store.idle_ping``): a connection the server dropped while idle is replaced without
failing the call, and a connection in constant use is not pinged at every check-out. A real
PostgreSQL; the statements are counted, nothing is timed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from keyturn.store import idle_ping
from keyturn.store.opening import open_engine
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.engine


def statements_of(engine: AsyncEngine) -> list[str]:
    """A list that grows by each statement ``engine`` runs (a ping included)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))


async def test_a_busy_connection_is_not_pinged_an_idle_dropped_one_is_replaced(
    postgres_server: PostgresServer,
) -> None:
    engine = open_engine(postgres_server.url())
    assert isinstance(engine, AsyncEngine)
    try:
        first = await backend_pid(engine)
        seen = statements_of(engine)
        for _ in range(5):
            assert await backend_pid(engine) == first  # the same pooled connection
        # Five calls in quick succession, five statements: no ping between them.
        assert seen == ["SELECT pg_backend_pid()"] * 5

        # The server drops the idle connection; once it has been idle long enough, the next
        # check-out pings it, finds it gone and hands out a new one: the call succeeds.
        postgres_server.sql_value("SELECT pg_terminate_backend(%s)::text", (first,))
        await asyncio.sleep(idle_ping.IDLE_BEFORE_PING + 0.2)
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()

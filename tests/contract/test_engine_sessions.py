"""Who still uses an account: ``list_sessions`` and ``end_sessions`` on real throwaway servers of
each kind.

An application session opened before an instant (a rotation) is listed with its engine id, its
client address and its name, and, where the engine records when it was opened (Redis ``age``,
PostgreSQL ``backend_start``), as opened before it; one opened after is listed as opened after.
MariaDB records no connection start (``connected_at`` is None: the caller must treat such a
session as possibly old). Ending sessions ends exactly those asked for that are still the
account's: the count is right, the other session keeps working, an id of another account's
session or one that does not exist ends nothing. keyturn's own admin connection is never
listed. The ``engine_case`` fixture is the engine contract suite's
(``tests.support.engine_cases``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from keyturn.core.errors import EngineRejected
from keyturn.core.model import EngineKind
from keyturn.engines.mysql import MySQLEngine
from tests.support.app_sessions import open_app_session
from tests.support.engine_cases import OLD, EngineCase, engine_case
from tests.support.fixtures import MariaDBServerFactory
from tests.support.mysql_server import MariaDBServer
from tests.support.sql_admin import create_user, mysql_node, mysql_sql

__all__ = ["engine_case"]

pytestmark = pytest.mark.engine

#: Redis reports a client's age in whole seconds: the instant sits well inside a gap.
GAP = 1.5


async def test_sessions_before_an_instant_are_listed_and_ended(engine_case: EngineCase) -> None:
    case, kind, port = engine_case, engine_case.kind, engine_case.server.port
    other = await case.add_account("other", "Other-pw-1")
    before = open_app_session(kind, port, case.account, OLD, "before-app")
    bystander = open_app_session(kind, port, other, "Other-pw-1", "other-app")
    await asyncio.sleep(GAP)
    instant = datetime.now(UTC)
    await asyncio.sleep(GAP)
    after = open_app_session(kind, port, case.account, OLD, "after-app")
    try:
        sessions = await case.engine.list_sessions(case.admin, case.account)
        by_id = {s.id: s for s in sessions}
        assert set(by_id) == {before.id, after.id}  # nor the bystander, nor keyturn's own
        old, new = by_id[before.id], by_id[after.id]
        assert old.client_addr == before.addr and new.client_addr == after.addr
        assert old.account == case.account and old.node == case.admin.endpoint
        if kind is EngineKind.MYSQL:
            assert old.opened_before(instant) is None  # MariaDB records no connection start
        else:
            assert (old.client_name, new.client_name) == ("before-app", "after-app")
            assert old.opened_before(instant) is True
            assert new.opened_before(instant) is False
            assert [s.id for s in sessions] == [before.id, after.id]  # oldest first
        assert old.idle_seconds is not None and old.idle_seconds >= 0

        # Another account's session and a made-up id are not ended by this account's call.
        ended = await case.engine.end_sessions(
            case.admin, case.account, [before.id, bystander.id, "999999", "x; DROP"]
        )
        assert ended == 1
        assert not before.alive()
        assert after.alive() and bystander.alive()
        assert await case.engine.end_sessions(case.admin, case.account, [before.id]) == 0
        left = await case.engine.list_sessions(case.admin, case.account)
        assert [s.id for s in left] == [after.id]
    finally:
        for held in (before, bystander, after):
            held.close()


async def test_mariadb_names_a_session_with_the_performance_schema_on(
    mariadb_server_factory: MariaDBServerFactory, mysql_engine: MySQLEngine
) -> None:
    """MariaDB knows a client's name only from its ``program_name`` connect attribute, which
    the performance schema keeps (off in the other tests' servers)."""
    server = mariadb_server_factory(performance_schema=True)
    create_user(server, "app", "%", OLD)
    held = open_app_session(EngineKind.MYSQL, server.port, "app@%", OLD, "billing-worker")
    try:
        [found] = await mysql_engine.list_sessions(mysql_node(server), "app@%")
        assert (found.id, found.client_name, found.client_addr) == (
            held.id,
            "billing-worker",
            held.addr,
        )
        assert found.connected_at is None and found.state == "sleep"
    finally:
        held.close()


async def test_mariadb_refuses_to_list_sessions_it_cannot_see(
    mariadb_server: MariaDBServer, mysql_engine: MySQLEngine
) -> None:
    """An admin account without PROCESS sees only its own connections in the processlist: the
    listing (and a rotation's watermark) is refused rather than answered "nobody"."""
    create_user(mariadb_server, "app", "%", OLD)
    create_user(mariadb_server, "keeper", "127.0.0.1", OLD)
    mysql_sql(mariadb_server, "GRANT CREATE USER, SELECT ON *.* TO 'keeper'@'127.0.0.1'")
    held = open_app_session(EngineKind.MYSQL, mariadb_server.port, "app@%", OLD, "billing")
    try:
        node = mysql_node(mariadb_server, "keeper", OLD)
        with pytest.raises(EngineRejected, match="PROCESS"):
            await mysql_engine.list_sessions(node, "app@%")
        with pytest.raises(EngineRejected, match="PROCESS"):
            await mysql_engine.session_mark(node)
        mark = await mysql_engine.session_mark(mysql_node(mariadb_server))
        assert mark is not None and mark.high >= int(held.id)
        [found] = await mysql_engine.list_sessions(mysql_node(mariadb_server), "app@%")
        assert found.opened_before_mark(mark) is True
    finally:
        held.close()


async def test_a_mariadb_mark_reads_the_run_start_once_per_admin_connection(
    mariadb_server: MariaDBServer, mysql_engine: MySQLEngine
) -> None:
    """The run's start is read with the first mark on an admin connection and kept with it (a
    connection never outlives its server's run): later marks agree on it exactly and still
    read the highest connection id of the moment."""
    create_user(mariadb_server, "app", "%", OLD)
    node = mysql_node(mariadb_server)
    first = await mysql_engine.session_mark(node)
    held = open_app_session(EngineKind.MYSQL, mariadb_server.port, "app@%", OLD, "billing")
    try:
        second = await mysql_engine.session_mark(node)
        assert first is not None and second is not None
        assert second.started == first.started and second.high >= int(held.id) > first.high
    finally:
        held.close()

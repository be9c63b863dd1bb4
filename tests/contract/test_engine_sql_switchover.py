"""Contract tests of the SQL engines' discovery and plan across a switchover, on a real primary
and replica of each: a PostgreSQL 15 primary and hot standby (``PostgresEngine``) and a
MariaDB 10.11 primary and GTID replica (``MySQLEngine``); ``sql_pair`` in
``tests.support.sql_pairs`` gives both. The primary is found by its replication status
(``pg_is_in_recovery()``; MariaDB's replica status) whatever the declared order. After the
replica is promoted and the old primary re-pointed at it (``switch_over`` in
``tests.support.postgres_server`` and ``tests.support.mysql_server``: on MariaDB ``STOP SLAVE;
RESET SLAVE ALL``, ``read_only=0`` on the new primary, ``read_only=1`` and ``CHANGE MASTER TO
... MASTER_USE_GTID=slave_pos`` on the old one) the new primary is found, the plan writes
there only (PostgreSQL: the old primary's ``log_statement=all`` log shows no ``ALTER ROLE``
from then on; MariaDB: its general log shows no client's ``ALTER USER``, only its replication
applier's, and its own binary log no new transaction) and every node verifies, and undoing it
brings the old password back everywhere. A stopped old primary cannot say what it is:
discovery fails with ``EngineUnavailable`` naming it (the worker waits for it, bounded, and
changes nothing meanwhile), until it returns as a replica. Two primaries (a split brain) are
refused with ``EngineRejected`` naming both; on PostgreSQL, once one of them is rebuilt as a
standby of the other, the promoted node is the one primary.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import NodeRole
from tests.support.mysql_server import switch_over as switch_mariadb
from tests.support.plans import planned
from tests.support.postgres_server import switch_over as switch_postgres
from tests.support.sql_pairs import SqlPair, sql_pair

__all__ = ["sql_pair"]

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: A refused connection answers at once; slack for the test machine.
QUICK = TIMEOUT + 3.0
NAME = "switch01"


@pytest.fixture
async def engine(sql_pair: SqlPair[Any]) -> AsyncIterator[Any]:
    driver = sql_pair.make_engine(TIMEOUT, GRACE)
    yield driver
    await driver.close()


def endpoint(server: Any) -> str:
    return f"127.0.0.1:{server.port}"


def switch_over(pair: SqlPair[Any], *, demote: bool = True) -> None:
    """The pair's replica promoted; the old primary its replica (``demote``) or stopped."""
    switch = switch_postgres if pair.kind == "postgres" else switch_mariadb
    switch(*pair.servers, demote=demote)


async def primary_of(engine: Any, pair: SqlPair[Any], servers: Sequence[Any]) -> str:
    """The endpoint discovery names primary (it comes first), checking the other roles."""
    topology = await engine.discover(pair.instance(servers, NAME))
    assert [n.role for n in topology.nodes] == [NodeRole.PRIMARY, NodeRole.REPLICA]
    return str(topology.nodes[0].endpoint)


async def test_discovery_ignores_the_declared_order(engine: Any, sql_pair: SqlPair[Any]) -> None:
    primary, replica = sql_pair.servers
    assert await primary_of(engine, sql_pair, [primary, replica]) == endpoint(primary)
    assert await primary_of(engine, sql_pair, [replica, primary]) == endpoint(primary)


async def test_after_a_switchover_the_plan_writes_on_the_new_primary(
    engine: Any, sql_pair: SqlPair[Any]
) -> None:
    pair = sql_pair.servers
    old_primary, new_primary = pair
    old, new = sql_pair.new_password(), sql_pair.new_password()
    sql_pair.create_account(old)
    # Discovered once before (pooled admin sessions to both, as a running keyturn has).
    assert await primary_of(engine, sql_pair, pair) == endpoint(old_primary)
    switch_over(sql_pair)
    since = sql_pair.mark(old_primary)

    for declared in (pair, pair[::-1]):
        assert await primary_of(engine, sql_pair, declared) == endpoint(new_primary)
    run = await planned(engine, sql_pair.instance(pair, NAME), sql_pair.account, new)
    assert [(s.endpoint, s.label) for s in run.plan.steps] == [
        (endpoint(new_primary), "set password on the primary")
    ]
    assert {c.endpoint for c in run.plan.checks} == {endpoint(s) for s in pair}
    await run.apply()
    await run.check()  # the demoted old primary waits until it applied (replayed) the change
    for server in pair:
        assert sql_pair.logs_in(server, new) and not sql_pair.logs_in(server, old)
    sql_pair.assert_written_only_on(new_primary, old_primary, since)

    await run.undo()
    sql_pair.wait_caught_up(old_primary)
    for server in pair:
        assert sql_pair.logs_in(server, old) and not sql_pair.logs_in(server, new)
    sql_pair.assert_written_only_on(new_primary, old_primary, since)
    assert sql_pair.leaked() == []


async def test_a_stopped_old_primary_blocks_discovery_until_it_returns(
    engine: Any, sql_pair: SqlPair[Any]
) -> None:
    pair = sql_pair.servers
    old_primary, new_primary = pair
    old = sql_pair.new_password()
    sql_pair.create_account(old)
    assert await primary_of(engine, sql_pair, pair) == endpoint(old_primary)
    switch_over(sql_pair, demote=False)

    # It cannot say whether it is a primary: nothing may be planned, whatever the order.
    for declared in (pair, pair[::-1]):
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as caught:
            await engine.discover(sql_pair.instance(declared, NAME))
        assert time.monotonic() - started < QUICK
        assert endpoint(old_primary) in caught.value.message
    assert sql_pair.logs_in(new_primary, old)

    # Back as a replica of the new primary: the instance has one primary again.
    old_primary.follow(new_primary)
    assert await primary_of(engine, sql_pair, pair) == endpoint(new_primary)
    instance = sql_pair.instance(pair, NAME)
    run = await planned(engine, instance, sql_pair.account, sql_pair.new_password())
    assert [s.endpoint for s in run.plan.steps] == [endpoint(new_primary)]


async def test_two_primaries_are_refused(engine: Any, sql_pair: SqlPair[Any]) -> None:
    pair = sql_pair.servers
    primary, replica = pair
    old = sql_pair.new_password()
    sql_pair.create_account(old)
    replica.promote()  # the old primary still runs and takes writes: a split brain
    logged = [len(sql_pair.statement_log(server)) for server in pair]

    with pytest.raises(EngineRejected) as caught:
        await engine.discover(sql_pair.instance(pair, NAME))
    message = caught.value.message
    assert "exactly one primary" in message
    assert endpoint(primary) in message and endpoint(replica) in message
    with pytest.raises(EngineRejected):
        await planned(
            engine, sql_pair.instance(pair, NAME), sql_pair.account, sql_pair.new_password()
        )
    for server, offset in zip(pair, logged, strict=True):
        assert sql_pair.logs_in(server, old)
        # Not even replicated.
        assert sql_pair.alter not in sql_pair.statement_log(server)[offset:]

    if sql_pair.rebuilds:
        # Resolved by rebuilding the old primary as a standby of the promoted one (their
        # timelines diverged): one primary again, and it is the promoted node.
        primary.follow(replica, rebuild=True)
        assert await primary_of(engine, sql_pair, pair) == endpoint(replica)

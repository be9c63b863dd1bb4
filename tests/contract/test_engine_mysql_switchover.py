"""Contract tests of ``MySQLEngine``'s discovery and plan across a switchover, on a real MariaDB
10.11 primary and GTID replica: the primary is found by its replication status whatever the
declared order; after the replica is promoted (``STOP SLAVE; RESET SLAVE ALL``, ``read_only=0``)
and the old primary re-pointed at it (``read_only=1``, ``CHANGE MASTER TO ...
MASTER_USE_GTID=slave_pos``; ``tests.support.mysql_server.switch_over``) the new primary is
found, the plan writes there only (the old primary's general log shows no client's ``ALTER
USER`` from then on, only its replication applier's, and its own binary log no new
transaction) and every node verifies, and undoing it brings the old password back everywhere.
A stopped old primary cannot say what it is: discovery fails with ``EngineUnavailable`` naming
it, until it returns as a replica. Two primaries (a split brain) are refused with
``EngineRejected`` naming both."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence

import pymysql  # type: ignore[import-untyped]
import pytest

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import Instance, NodeRole, Product
from keyturn.engines.mysql import MySQLEngine
from tests.support.fixtures import MariaDBServerFactory
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string, switch_over
from tests.support.plans import instance_of, planned

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: A refused connection answers at once; slack for the test machine.
QUICK = TIMEOUT + 3.0
ACCOUNT = "app@%"
USED: list[str] = []


def new_password() -> str:
    password = "My-" + secrets.token_urlsafe(12) + "s7"
    USED.append(password)
    return password


@pytest.fixture
async def engine() -> AsyncIterator[MySQLEngine]:
    driver = MySQLEngine(timeout=TIMEOUT, replica_grace=GRACE)
    yield driver
    await driver.close()


@pytest.fixture
def pair(mariadb_server_factory: MariaDBServerFactory) -> list[MariaDBServer]:
    primary = mariadb_server_factory()
    replica = mariadb_server_factory(replica_of=primary)
    return [primary, replica]


def instance(servers: Sequence[MariaDBServer]) -> Instance:
    return instance_of(
        [server.url() for server in servers],
        product=Product.TENCENT_TDMYSQL,
        instance_id="tdsql3-switch01",
    )


def endpoint(server: MariaDBServer) -> str:
    return f"127.0.0.1:{server.port}"


def create_user(primary: MariaDBServer, replica: MariaDBServer, password: str) -> None:
    """``app@%`` made on the primary (as a hash), then applied by the replica."""
    primary.socket_sql(
        f"CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD {sql_string(native_hash(password))};"
    )
    replica.wait_replicated()


def logs_in(server: MariaDBServer, password: str) -> bool:
    try:
        pymysql.connect(
            host="127.0.0.1",
            port=server.port,
            user="app",
            password=password,
            connect_timeout=5,
            ssl_disabled=True,
        ).close()
    except pymysql.err.OperationalError:
        return False
    return True


def alters_by_clients(server: MariaDBServer, since: int) -> list[str]:
    """The ``ALTER USER`` statements the general log shows since offset ``since`` that a
    client sent (the replication applier's own are logged too, under its thread id)."""
    applier = server.socket_sql(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_SQL'"
    ).split()
    found = []
    for line in server.general_log_text()[since:].splitlines():
        match = re.search(r"\s(\d+) Query\t(.*)$", line)
        if match and match[2].startswith("ALTER USER") and match[1] not in applier:
            found.append(line)
    return found


def own_position(server: MariaDBServer) -> str:
    """The GTIDs of the server's own binary log (replicated writes are not in it)."""
    return server.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos").strip()


async def primary_of(engine: MySQLEngine, servers: Sequence[MariaDBServer]) -> str:
    """The endpoint discovery names primary (it comes first), checking the other roles."""
    topology = await engine.discover(instance(servers))
    assert [n.role for n in topology.nodes] == [NodeRole.PRIMARY, NodeRole.REPLICA]
    return topology.nodes[0].endpoint


async def test_mysql_discovery_ignores_the_declared_order(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    primary, replica = pair
    assert await primary_of(engine, [primary, replica]) == endpoint(primary)
    assert await primary_of(engine, [replica, primary]) == endpoint(primary)


async def test_mysql_after_a_switchover_the_plan_writes_on_the_new_primary(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = pair
    old, new = new_password(), new_password()
    create_user(old_primary, new_primary, old)
    assert await primary_of(engine, pair) == endpoint(old_primary)
    switch_over(old_primary, new_primary)
    logged_before = len(old_primary.general_log_text())
    own_before = own_position(old_primary)

    for declared in (pair, pair[::-1]):
        assert await primary_of(engine, declared) == endpoint(new_primary)
    run = await planned(engine, instance(pair), ACCOUNT, new)
    assert [(s.endpoint, s.label) for s in run.plan.steps] == [
        (endpoint(new_primary), "set password on the primary")
    ]
    assert {c.endpoint for c in run.plan.checks} == {endpoint(s) for s in pair}
    await run.apply()
    await run.check()  # the demoted old primary waits (MASTER_GTID_WAIT) until it applied it
    for server in pair:
        assert logs_in(server, new) and not logs_in(server, old)
    # Written on the new primary only: the old one applied it from the new one's binary log
    # (its applier's statement is logged, but no client's, and its own binary log is as it was).
    assert alters_by_clients(new_primary, 0)
    assert alters_by_clients(old_primary, logged_before) == []
    assert "ALTER USER" in old_primary.general_log_text()[logged_before:]
    assert own_position(old_primary) == own_before

    await run.undo()
    old_primary.wait_replicated()
    for server in pair:
        assert logs_in(server, old) and not logs_in(server, new)
    assert alters_by_clients(old_primary, logged_before) == []
    assert own_position(old_primary) == own_before
    logs = "".join(s.general_log_text() + s.binlog_text() for s in pair)
    assert [p for p in USED if p in logs] == []


async def test_mysql_a_stopped_old_primary_blocks_discovery_until_it_returns(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    old_primary, new_primary = pair
    old = new_password()
    create_user(old_primary, new_primary, old)
    assert await primary_of(engine, pair) == endpoint(old_primary)
    switch_over(old_primary, new_primary, demote=False)

    for declared in (pair, pair[::-1]):
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as caught:
            await engine.discover(instance(declared))
        assert time.monotonic() - started < QUICK
        assert endpoint(old_primary) in caught.value.message
    assert logs_in(new_primary, old)

    # Back as a replica of the new primary: the instance has one primary again.
    old_primary.follow(new_primary)
    assert await primary_of(engine, pair) == endpoint(new_primary)
    run = await planned(engine, instance(pair), ACCOUNT, new_password())
    assert [s.endpoint for s in run.plan.steps] == [endpoint(new_primary)]


async def test_mysql_two_primaries_are_refused(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    primary, replica = pair
    old = new_password()
    create_user(primary, replica, old)
    replica.promote()  # the old primary still takes writes: a split brain
    logged = [len(server.general_log_text()) for server in pair]

    with pytest.raises(EngineRejected) as caught:
        await engine.discover(instance(pair))
    message = caught.value.message
    assert "exactly one primary" in message
    assert endpoint(primary) in message and endpoint(replica) in message
    with pytest.raises(EngineRejected):
        await planned(engine, instance(pair), ACCOUNT, new_password())
    for server, offset in zip(pair, logged, strict=True):
        assert logs_in(server, old)
        assert "ALTER USER" not in server.general_log_text()[offset:]  # not even replicated

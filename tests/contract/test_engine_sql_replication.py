"""Contract tests of the SQL engines on a real primary and a replica streaming from it: a
PostgreSQL 15 primary and hot standby (``pg_basebackup -R``; ``PostgresEngine``) and a MariaDB
10.11 primary and read-only GTID replica (``MySQLEngine``); ``sql_pair`` in
``tests.support.sql_pairs`` gives both. The primary is changed, the replica is never written
(PostgreSQL: the standby's ``log_statement=all`` log holds no ``ALTER ROLE``; MariaDB: the
replica's own binary log stays empty of ``ALTER USER`` and its ``@@gtid_binlog_pos`` empty),
``verify`` on the replica waits until it replayed (MariaDB: ``MASTER_GTID_WAIT``, applied) the
change and then proves the login, a restore comes back on both, and a replica that lags, is
stopped, or whose position keyturn forgot (a restart) fails or recovers within a bound. Every
claim is checked from outside with raw psycopg and PyMySQL logins too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyturn.core.errors import DomainError, EngineUnavailable, VerificationFailed
from keyturn.core.secrets import Secret
from tests.support.sql_pairs import SqlPair, sql_pair

__all__ = ["sql_pair"]

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: verify's bound on a replica, and slack for the test machine.
BUDGET = TIMEOUT + GRACE
SLACK = 3.0
NAME = "repl0001"


@pytest.fixture
async def engine(sql_pair: SqlPair[Any]) -> AsyncIterator[Any]:
    driver = sql_pair.make_engine(TIMEOUT, GRACE)
    yield driver
    await driver.close()


async def test_snapshot_and_writes_on_a_replica(engine: Any, sql_pair: SqlPair[Any]) -> None:
    account = sql_pair.account
    old = sql_pair.new_password()
    sql_pair.create_account(old)
    nodes = sql_pair.nodes(NAME)
    snapshots = [await engine.snapshot(node, account) for node in nodes]
    sql_pair.assert_replica_snapshot(snapshots, old)
    # On the replica alone: nothing is written, the result says why.
    result = await engine.set_password(nodes[1], account, Secret(sql_pair.new_password()))
    assert result.persisted and result.note == "replicated from the primary"
    result = await engine.restore(nodes[1], snapshots[1])
    assert result.note == "replicated from the primary"
    sql_pair.assert_replica_kept(old)
    # The primary is recognised as one, and the listing works on the replica too.
    assert (
        await engine.set_password(nodes[0], account, Secret(sql_pair.new_password()))
    ).note == ""
    if sql_pair.kind == "postgres":
        assert (await engine.probe(nodes[1])).version.startswith("15.")
    assert account in {a.name for a in await engine.list_accounts(nodes[1])}
    if sql_pair.kind == "mysql":
        sql_pair.assert_replica_untouched()


async def test_reset_verify_and_restore_on_primary_and_replica(
    engine: Any, sql_pair: SqlPair[Any]
) -> None:
    account = sql_pair.account
    old, new = sql_pair.new_password(), sql_pair.new_password()
    sql_pair.create_account(old)
    nodes = sql_pair.nodes(NAME)
    snapshots = [await engine.snapshot(node, account) for node in nodes]
    # As the worker does: apply on every node (primary first), then verify every node. The
    # replica is verified right away: verify waits for it to catch up.
    results = [await engine.set_password(node, account, Secret(new)) for node in nodes]
    assert [r.note for r in results] == ["", "replicated from the primary"]
    for node in nodes:
        await engine.verify(node, account, Secret(new))
    for server in sql_pair.servers:
        assert sql_pair.logs_in(server, new)
        assert not sql_pair.logs_in(server, old)
    assert await engine.password_matches(nodes[1], account, Secret(new))

    for node in nodes:
        await engine.restore(node, snapshots[node.ordinal])
    for node in nodes:
        await engine.verify(node, account, Secret(old))
    for server in sql_pair.servers:
        assert sql_pair.logs_in(server, old)
        assert not sql_pair.logs_in(server, new)
        assert sql_pair.stored(server) == sql_pair.stored_for(old, snapshots[0])
    sql_pair.assert_replica_untouched()


async def test_a_lagging_replica_fails_verification_in_bounded_time(
    engine: Any, sql_pair: SqlPair[Any]
) -> None:
    account, replica = sql_pair.account, sql_pair.servers[1]
    old, new = sql_pair.new_password(), sql_pair.new_password()
    sql_pair.create_account(old)
    nodes = sql_pair.nodes(NAME)
    snapshot = await engine.snapshot(nodes[0], account)
    sql_pair.set_applying(replica, False)
    for node in nodes:
        await engine.set_password(node, account, Secret(new))
    await engine.verify(nodes[0], account, Secret(new))
    started = time.monotonic()
    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(nodes[1], account, Secret(new))
    elapsed = time.monotonic() - started
    assert BUDGET - 0.1 <= elapsed <= BUDGET + SLACK
    assert nodes[1].address.endpoint in caught.value.message
    assert sql_pair.lag in caught.value.message
    # The worker's rollback: restore the primary, the replica follows once it catches up.
    await engine.restore(nodes[0], snapshot)
    sql_pair.set_applying(replica, True)
    await engine.verify(nodes[1], account, Secret(old))
    assert sql_pair.logs_in(replica, old) and not sql_pair.logs_in(replica, new)
    sql_pair.assert_replica_untouched()


async def test_a_stopped_replica_fails_quickly(engine: Any, sql_pair: SqlPair[Any]) -> None:
    account, replica = sql_pair.account, sql_pair.servers[1]
    sql_pair.create_account(sql_pair.new_password())
    nodes = sql_pair.nodes(NAME)
    await engine.snapshot(nodes[1], account)  # a pooled admin connection, soon dead
    new = Secret(sql_pair.new_password())
    await engine.set_password(nodes[0], account, new)
    replica.stop()
    for call in (
        lambda: engine.verify(nodes[1], account, new),
        lambda: engine.set_password(nodes[1], account, new),
        lambda: engine.verify(nodes[1], account, new),
    ):
        started = time.monotonic()
        with pytest.raises(DomainError) as caught:
            await call()
        assert time.monotonic() - started < BUDGET + SLACK
        assert isinstance(caught.value, EngineUnavailable | VerificationFailed)
        assert nodes[1].address.endpoint in caught.value.message


async def test_without_a_known_position_the_login_is_retried(sql_pair: SqlPair[Any]) -> None:
    """After a keyturn restart (a new engine) nothing says how far the replica must catch
    up: the fresh login is retried within the same bound."""
    account, replica = sql_pair.account, sql_pair.servers[1]
    old, new = sql_pair.new_password(), sql_pair.new_password()
    sql_pair.create_account(old)
    nodes = sql_pair.nodes(NAME)
    sql_pair.set_applying(replica, False)
    first = sql_pair.make_engine(TIMEOUT, GRACE)
    try:
        await first.set_password(nodes[0], account, Secret(new))
    finally:
        await first.close()

    restarted = sql_pair.make_engine(TIMEOUT, GRACE)
    try:
        started = time.monotonic()
        with pytest.raises(VerificationFailed) as caught:
            await restarted.verify(nodes[1], account, Secret(new))
        assert BUDGET - 0.1 <= time.monotonic() - started <= BUDGET + SLACK
        assert nodes[1].address.endpoint in caught.value.message

        # The replica applies again while verify retries: it succeeds.
        timer = threading.Timer(0.4, sql_pair.set_applying, (replica, True))
        timer.start()
        try:
            started = time.monotonic()
            await restarted.verify(nodes[1], account, Secret(new))
            assert 0.3 <= time.monotonic() - started <= BUDGET + SLACK
        finally:
            timer.join()
    finally:
        await restarted.close()
    assert sql_pair.logs_in(replica, new) and not sql_pair.logs_in(replica, old)
    sql_pair.assert_replica_untouched()

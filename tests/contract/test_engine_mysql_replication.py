"""Contract tests of ``MySQLEngine`` on a real MariaDB 10.11 primary and a read-only GTID
replica of it: the primary is changed, the replica is never written (its own binary log stays
empty of ``ALTER USER`` and its ``@@gtid_binlog_pos`` empty), ``verify`` on the replica waits
with ``MASTER_GTID_WAIT`` until it applied the change and then proves the login, a restore
comes back on both, and a replica that lags, is stopped, or whose position keyturn forgot (a
restart) fails or recovers within a bound. Logins are checked from outside with PyMySQL too."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator

import pytest

from keyturn.core.errors import DomainError, EngineUnavailable, VerificationFailed
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine
from tests.support.fixtures import MariaDBServerFactory
from tests.support.logins import can_login_mysql
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: verify's bound on a replica, and slack for the test machine.
BUDGET = TIMEOUT + GRACE
SLACK = 3.0
ACCOUNT = "app@%"
USED: list[str] = []


def new_password() -> str:
    password = "My-" + secrets.token_urlsafe(12) + "7"
    USED.append(password)
    return password


def make_engine() -> MySQLEngine:
    return MySQLEngine(timeout=TIMEOUT, replica_grace=GRACE)


@pytest.fixture
async def engine() -> AsyncIterator[MySQLEngine]:
    driver = make_engine()
    yield driver
    await driver.close()


@pytest.fixture
def pair(mariadb_server_factory: MariaDBServerFactory) -> list[MariaDBServer]:
    primary = mariadb_server_factory()
    replica = mariadb_server_factory(replica_of=primary)
    return [primary, replica]


def nodes_of(servers: list[MariaDBServer]) -> list[Node]:
    return [
        Node(
            instance_id="tdsql3-repl0001",
            ordinal=i,
            address=parse_node_url(server.url(), EngineKind.MYSQL),
        )
        for i, server in enumerate(servers)
    ]


def create_user(pair: list[MariaDBServer], password: str) -> None:
    """``app@%`` made on the primary (as a hash), then applied by the replica."""
    pair[0].socket_sql(
        f"CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD {sql_string(native_hash(password))};"
    )
    pair[1].wait_replicated()


def logs_in(server: MariaDBServer, password: str) -> bool:
    return can_login_mysql(server.port, "app", password)


def stored_hash(server: MariaDBServer) -> str:
    return server.socket_sql(
        "SELECT authentication_string FROM mysql.user WHERE User = 'app' AND Host = '%'"
    ).strip()


def set_applier(replica: MariaDBServer, running: bool) -> None:
    """Stop or start the replica's SQL thread (events still arrive, none is applied)."""
    replica.socket_sql("START SLAVE SQL_THREAD;" if running else "STOP SLAVE SQL_THREAD;")


def assert_replica_untouched(pair: list[MariaDBServer]) -> None:
    """keyturn wrote nothing on the replica: its own binary log (``log_slave_updates`` off)
    holds only local writes, and there are none; no plaintext is in any log."""
    primary, replica = pair
    assert replica.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos").strip() == ""
    assert "ALTER USER" not in replica.binlog_text()
    primary_logs = primary.general_log_text() + primary.binlog_text()
    assert "ALTER USER" in primary_logs
    logs = primary_logs + replica.general_log_text() + replica.binlog_text()
    assert [p for p in USED if p in logs] == []


async def test_snapshot_and_writes_on_a_replica(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    replica = pair[1]
    old = new_password()
    create_user(pair, old)
    nodes = nodes_of(pair)
    snapshots = [await engine.snapshot(node, ACCOUNT) for node in nodes]
    assert snapshots[1].data == snapshots[0].data
    assert snapshots[1].data["authentication_string"] == native_hash(old)
    result = await engine.set_password(nodes[1], ACCOUNT, Secret(new_password()))
    assert result.persisted and result.note == "replicated from the primary"
    result = await engine.restore(nodes[1], snapshots[1])
    assert result.note == "replicated from the primary"
    assert logs_in(replica, old) and stored_hash(replica) == native_hash(old)
    assert (await engine.set_password(nodes[0], ACCOUNT, Secret(new_password()))).note == ""
    assert "app@%" in {a.name for a in await engine.list_accounts(nodes[1])}
    assert_replica_untouched(pair)


async def test_reset_verify_and_restore_on_primary_and_replica(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    old, new = new_password(), new_password()
    create_user(pair, old)
    nodes = nodes_of(pair)
    snapshots = [await engine.snapshot(node, ACCOUNT) for node in nodes]
    results = [await engine.set_password(node, ACCOUNT, Secret(new)) for node in nodes]
    assert [r.note for r in results] == ["", "replicated from the primary"]
    # Verified right away, as the worker does: verify waits for the replica's GTID.
    for node in nodes:
        await engine.verify(node, ACCOUNT, Secret(new))
    for server in pair:
        assert logs_in(server, new)
        assert not logs_in(server, old)
    assert await engine.password_matches(nodes[1], ACCOUNT, Secret(new))

    for node in nodes:
        await engine.restore(node, snapshots[node.ordinal])
    for node in nodes:
        await engine.verify(node, ACCOUNT, Secret(old))
    for server in pair:
        assert logs_in(server, old)
        assert not logs_in(server, new)
        assert stored_hash(server) == native_hash(old)
    assert_replica_untouched(pair)


async def test_a_lagging_replica_fails_verification_in_bounded_time(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    replica = pair[1]
    old, new = new_password(), new_password()
    create_user(pair, old)
    nodes = nodes_of(pair)
    snapshot = await engine.snapshot(nodes[0], ACCOUNT)
    set_applier(replica, False)
    for node in nodes:
        await engine.set_password(node, ACCOUNT, Secret(new))
    await engine.verify(nodes[0], ACCOUNT, Secret(new))
    started = time.monotonic()
    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(nodes[1], ACCOUNT, Secret(new))
    assert BUDGET - 0.1 <= time.monotonic() - started <= BUDGET + SLACK
    assert nodes[1].address.endpoint in caught.value.message
    assert "did not apply" in caught.value.message
    # The worker's rollback: restore the primary; the replica follows once it applies.
    await engine.restore(nodes[0], snapshot)
    set_applier(replica, True)
    await engine.verify(nodes[1], ACCOUNT, Secret(old))
    assert logs_in(replica, old) and not logs_in(replica, new)
    assert_replica_untouched(pair)


async def test_a_stopped_replica_fails_quickly(
    engine: MySQLEngine, pair: list[MariaDBServer]
) -> None:
    replica = pair[1]
    create_user(pair, new_password())
    nodes = nodes_of(pair)
    await engine.snapshot(nodes[1], ACCOUNT)  # a pooled admin connection, soon dead
    new = Secret(new_password())
    await engine.set_password(nodes[0], ACCOUNT, new)
    replica.stop()
    for call in (
        lambda: engine.verify(nodes[1], ACCOUNT, new),
        lambda: engine.set_password(nodes[1], ACCOUNT, new),
        lambda: engine.verify(nodes[1], ACCOUNT, new),
    ):
        started = time.monotonic()
        with pytest.raises(DomainError) as caught:
            await call()
        assert time.monotonic() - started < BUDGET + SLACK
        assert isinstance(caught.value, EngineUnavailable | VerificationFailed)
        assert nodes[1].address.endpoint in caught.value.message


async def test_without_a_known_position_the_login_is_retried(
    pair: list[MariaDBServer],
) -> None:
    """After a keyturn restart (a new engine) no GTID says how far the replica must apply:
    the fresh login is retried within the same bound."""
    replica = pair[1]
    old, new = new_password(), new_password()
    create_user(pair, old)
    nodes = nodes_of(pair)
    set_applier(replica, False)
    first = make_engine()
    try:
        await first.set_password(nodes[0], ACCOUNT, Secret(new))
    finally:
        await first.close()

    restarted = make_engine()
    try:
        started = time.monotonic()
        with pytest.raises(VerificationFailed) as caught:
            await restarted.verify(nodes[1], ACCOUNT, Secret(new))
        assert BUDGET - 0.1 <= time.monotonic() - started <= BUDGET + SLACK
        assert nodes[1].address.endpoint in caught.value.message

        timer = threading.Timer(0.4, set_applier, (replica, True))
        timer.start()
        try:
            started = time.monotonic()
            await restarted.verify(nodes[1], ACCOUNT, Secret(new))
            assert 0.3 <= time.monotonic() - started <= BUDGET + SLACK
        finally:
            timer.join()
    finally:
        await restarted.close()
    assert logs_in(replica, new) and not logs_in(replica, old)
    assert_replica_untouched(pair)

"""Replicated SQL instances through the official Tencent SDKs: a TencentDB for PostgreSQL
instance of a primary and a hot standby (``ResetAccountPassword``) and a TDSQL instance of a
MariaDB primary and a read-only GTID replica (``ResetUsersPassword``), both registered with the
primary first. keyturn changes the primary only, waits for the standby or replica to apply the
change, and proves the login there: when the synchronous call returns, the new password logs
in on both nodes and the old one on neither. A standby or replica that does not catch up fails
the call with the vendor's code after a bounded wait, and the old password is back everywhere.

keyturn runs here with ``KEYTURN_ENGINE_TIMEOUT=1`` so that bounded wait (the engine timeout
plus three seconds) stays short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.keyturn_server import KeyturnServer
from tests.support.mysql_server import MariaDBServer
from tests.support.passwords import USED_PASSWORDS, leaked, new_password
from tests.support.postgres_server import PostgresServer
from tests.support.sdk import code_of, tdmysql_sdk, users_request
from tests.support.sql_replication import (
    create_role,
    create_user,
    my_logs_in,
    my_only,
    pg_only,
    pg_reset,
    pg_tasks,
    register_pg,
    register_tdsql,
    start_keyturn,
)

pytestmark = pytest.mark.engine

ENGINE_TIMEOUT = 1.0
#: The engines' default grace on top of the engine timeout, and slack for the machine.
BOUND = ENGINE_TIMEOUT + 3.0 + 3.0


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    yield from start_keyturn(tmp_path_factory.mktemp("keyturn"), ENGINE_TIMEOUT)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_pair(postgres_pair: list[PostgresServer]) -> Iterator[list[PostgresServer]]:
    primary, standby = postgres_pair
    yield postgres_pair
    # The standby was never written (its log_statement=all log shows all keyturn sent it), and
    # no plaintext password reached either log.
    assert "ALTER ROLE" in primary.log_text()
    assert "ALTER ROLE" not in standby.log_text()
    logs = primary.log_text() + standby.log_text()
    assert [p for p in USED_PASSWORDS if p in logs] == []


def test_postgres_primary_and_standby(
    keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    instance_id = register_pg(keyturn, pg_pair)
    old = new_password()
    create_role(pg_pair, "appuser", old)
    new = new_password()
    pg_reset(keyturn, instance_id, "appuser", new)
    # Synchronous: the standby replayed and proved the change before the call returned.
    pg_only(pg_pair, "appuser", new, old)

    task = pg_tasks(keyturn, instance_id)[0]
    assert task.Status == "Success"

    # A second reset right after: the standby follows again.
    newer = new_password()
    pg_reset(keyturn, instance_id, "appuser", newer)
    pg_only(pg_pair, "appuser", newer, new)


def test_postgres_standby_not_replaying_rolls_back(
    keyturn: KeyturnServer, pg_pair: list[PostgresServer]
) -> None:
    standby = pg_pair[1]
    instance_id = register_pg(keyturn, pg_pair)
    old = new_password()
    create_role(pg_pair, "appuser", old)
    standby.set_replay_paused(True)
    new = new_password()
    started = time.monotonic()
    code = code_of(lambda: pg_reset(keyturn, instance_id, "appuser", new))
    assert code == "FailedOperation.FailedOperationError"
    assert time.monotonic() - started < BOUND
    standby.set_replay_paused(False)
    standby.wait_replayed()
    pg_only(pg_pair, "appuser", old, new)


# --------------------------------------------------------------------------- TDSQL (MariaDB)


@pytest.fixture
def my_pair(mariadb_pair: list[MariaDBServer]) -> Iterator[list[MariaDBServer]]:
    primary, replica = mariadb_pair
    yield mariadb_pair
    # Nothing written on the replica: its own binary log holds no transaction of its own.
    assert replica.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos").strip() == ""
    assert "ALTER USER" in primary.binlog_text()
    logs = "".join(s.general_log_text() + s.binlog_text() for s in (primary, replica))
    assert [p for p in USED_PASSWORDS if p in logs] == []


def test_tdsql_primary_and_replica(keyturn: KeyturnServer, my_pair: list[MariaDBServer]) -> None:
    instance_id = register_tdsql(keyturn, my_pair)
    old_a, old_b = new_password(), new_password()
    create_user(my_pair, "app_a", "%", old_a)
    create_user(my_pair, "app_b", "127.0.0.1", old_b)
    new_a, new_b = new_password(), new_password()
    response = tdmysql_sdk(keyturn.endpoint).ResetUsersPassword(
        users_request(instance_id, ("app_a", "%", new_a), ("app_b", "127.0.0.1", new_b))
    )
    assert response.FlowId > 0
    for server in my_pair:
        assert my_logs_in(server, "app_a", new_a) and not my_logs_in(server, "app_a", old_a)
        assert my_logs_in(server, "app_b", new_b) and not my_logs_in(server, "app_b", old_b)


def test_tdsql_replica_not_applying_rolls_back(
    keyturn: KeyturnServer, my_pair: list[MariaDBServer]
) -> None:
    replica = my_pair[1]
    instance_id = register_tdsql(keyturn, my_pair)
    old = new_password()
    create_user(my_pair, "app", "%", old)
    replica.socket_sql("STOP SLAVE SQL_THREAD;")
    new = new_password()
    client = tdmysql_sdk(keyturn.endpoint)
    started = time.monotonic()
    code = code_of(lambda: client.ResetUsersPassword(users_request(instance_id, ("app", "%", new))))
    assert code == "FailedOperation.DBUpdateUserError"
    assert time.monotonic() - started < BOUND
    replica.socket_sql("START SLAVE SQL_THREAD;")
    replica.wait_replicated()
    my_only(my_pair, "app", old, new)


def test_no_plaintext_in_keyturn(keyturn: KeyturnServer) -> None:
    """Runs last: no password set above is in keyturn's log or data dir."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []

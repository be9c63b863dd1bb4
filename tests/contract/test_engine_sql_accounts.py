"""Account creation on the SQL engines, against a real primary and its replica: PostgreSQL 15
(primary + hot standby) and MariaDB 10.11 (primary + replica).

As the service does it (``keyturn.service.accounts``): the account is created on every node
the engine discovers (the primary writes, the replica answers "replicated"), then proven by a
fresh login on every node, from keyturn and from outside. The new account controls nothing
(PostgreSQL: no SUPERUSER/CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, read-only sessions on
request; MariaDB: ``USAGE`` only, on the host a reset would name: ``%``), an existing account is
never changed, a MariaDB row that would be shadowed is refused, a drop removes it (and is
idempotent), odd names and passwords are only values, and no log holds the plaintext.
"""

from __future__ import annotations

import secrets

import pytest

from keyturn.core.errors import AccountExists, AccountShadowed
from keyturn.core.model import Instance, Product
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.postgres import PostgresEngine
from tests.support.logins import mysql_login, postgres_login
from tests.support.mysql_server import MariaDBServer
from tests.support.plans import instance_of
from tests.support.postgres_server import PostgresServer
from tests.support.sql_replication import create_user, my_logs_in, pg_logs_in

pytestmark = pytest.mark.engine

TIMEOUT = 3.0
ODD_NAME = "q\"uo'te; DROP ROLE x --"
ODD_PASSWORD = "p w \"q\" 's' ünï >x <y #z %s"


def new_password() -> str:
    return "Ac-" + secrets.token_urlsafe(12) + "a9!"


def pg_instance(pair: list[PostgresServer]) -> Instance:
    return instance_of(
        [s.url() for s in pair], product=Product.TENCENT_POSTGRES, instance_id="postgres-acct0001"
    )


def my_instance(pair: list[MariaDBServer]) -> Instance:
    return instance_of(
        [s.url() for s in pair], product=Product.TENCENT_TDMYSQL, instance_id="tdsql3-acct0001"
    )


async def create_everywhere(
    engine: PostgresEngine | MySQLEngine,
    instance: Instance,
    account: str,
    password: str,
    *,
    read_only: bool = False,
) -> list[str]:
    """What ``Accounts.create`` does: create on every discovered node, verify on every node;
    the notes the nodes answered."""
    nodes = (await engine.discover(instance)).nodes
    notes = []
    for node in nodes:
        result = await engine.create_account(node, account, Secret(password), read_only=read_only)
        assert result.persisted
        notes.append(result.note)
    for node in nodes:
        await engine.verify(node, account, Secret(password))
    return notes


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_role_created_on_the_primary_logs_in_everywhere(
    postgres_engine: PostgresEngine, postgres_pair: list[PostgresServer]
) -> None:
    password = new_password()
    instance = pg_instance(postgres_pair)
    notes = await create_everywhere(postgres_engine, instance, "app", password)
    assert notes[1] == "replicated from the primary"  # the standby is never written
    for server in postgres_pair:
        assert pg_logs_in(server, "app", password)
        assert not pg_logs_in(server, "app", new_password())
    attributes = postgres_pair[0].sql_value(
        "SELECT ARRAY[rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
        " NOT rolcanlogin, rolvaliduntil IS NOT NULL] FROM pg_roles WHERE rolname = 'app'"
    )
    assert attributes == [False] * 7
    assert postgres_login(postgres_pair[0].port, "app", password, "SHOW transaction_read_only") == (
        "off",
    )
    stored = str(
        postgres_pair[0].sql_value("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    )
    assert stored.startswith("SCRAM-SHA-256$4096:")
    # An existing role is never changed: refused, and its password still logs in.
    node = instance.primary
    with pytest.raises(AccountExists):
        await postgres_engine.create_account(node, "app", Secret(new_password()), read_only=False)
    assert pg_logs_in(postgres_pair[0], "app", password)
    assert "app" in {a.name for a in await postgres_engine.list_accounts(node)}
    # A drop (the rollback of a half-done creation) removes it; a second drop is no error.
    for node in (await postgres_engine.discover(instance)).nodes:
        await postgres_engine.drop_account(node, "app")
        await postgres_engine.drop_account(node, "app")
    postgres_pair[1].wait_replayed()
    for server in postgres_pair:
        assert not pg_logs_in(server, "app", password)
    text = postgres_pair[0].log_text()
    assert "CREATE ROLE" in text and password not in text


async def test_postgres_read_only_role_and_odd_values(
    postgres_engine: PostgresEngine, postgres_pair: list[PostgresServer]
) -> None:
    instance = pg_instance(postgres_pair)
    await create_everywhere(postgres_engine, instance, ODD_NAME, ODD_PASSWORD, read_only=True)
    for server in postgres_pair:
        row = postgres_login(server.port, ODD_NAME, ODD_PASSWORD, "SHOW transaction_read_only")
        assert row == ("on",)
    assert postgres_pair[0].sql_value("SELECT count(*) FROM pg_roles WHERE rolname = 'x'") == 0
    assert ODD_PASSWORD not in postgres_pair[0].log_text()


# --------------------------------------------------------------------------- MariaDB


async def test_mariadb_user_created_on_the_primary_logs_in_everywhere(
    mysql_engine: MySQLEngine, mariadb_pair: list[MariaDBServer]
) -> None:
    password = new_password()
    instance = my_instance(mariadb_pair)
    notes = await create_everywhere(mysql_engine, instance, "app", password)
    assert notes[1] == "replicated from the primary"
    for server in mariadb_pair:
        assert my_logs_in(server, "app", password)
        assert not my_logs_in(server, "app", new_password())
        # The host a reset names for "app": the one row 'app'@'%', holding USAGE only.
        row = mysql_login(server.port, "app", password, "SELECT CURRENT_USER()")
        assert row == ("app@%",)
        grants = mariadb_pair[0].socket_sql("SHOW GRANTS FOR 'app'@'%';")
        assert "GRANT USAGE ON *.* TO `app`@`%`" in grants
        assert grants.count("GRANT ") == 1
    node = instance.primary
    with pytest.raises(AccountExists):
        await mysql_engine.create_account(node, "app", Secret(new_password()), read_only=True)
    with pytest.raises(AccountExists):
        await mysql_engine.create_account(node, "app@%", Secret(new_password()), read_only=False)
    assert my_logs_in(mariadb_pair[0], "app", password)
    for node in (await mysql_engine.discover(instance)).nodes:
        await mysql_engine.drop_account(node, "app")
        await mysql_engine.drop_account(node, "app")
    mariadb_pair[1].wait_replicated()
    for server in mariadb_pair:
        assert not my_logs_in(server, "app", password)
    for text in (mariadb_pair[0].general_log_text(), mariadb_pair[0].binlog_text()):
        assert "CREATE USER" in text and password not in text


async def test_mariadb_refuses_a_shadowed_row_and_takes_odd_values(
    mysql_engine: MySQLEngine, mariadb_pair: list[MariaDBServer]
) -> None:
    instance = my_instance(mariadb_pair)
    create_user(mariadb_pair, "web", "127.0.0.1", "Web-pw-1")
    with pytest.raises(AccountShadowed):
        await mysql_engine.create_account(
            instance.primary, "web", Secret(new_password()), read_only=False
        )
    assert "web@%" not in {a.name for a in await mysql_engine.list_accounts(instance.primary)}
    # A host of its own is taken as given ("user@host", split on the last @).
    await create_everywhere(mysql_engine, instance, ODD_NAME + "@127.0.0.1", ODD_PASSWORD)
    for server in mariadb_pair:
        assert my_logs_in(server, ODD_NAME, ODD_PASSWORD)
    for text in (mariadb_pair[0].general_log_text(), mariadb_pair[0].binlog_text()):
        assert ODD_PASSWORD not in text

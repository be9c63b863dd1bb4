"""What only ``MySQLEngine`` does, against real, throwaway MariaDB 10.11 servers (the contract
every engine keeps is ``test_engine_contract``).

Accounts are ``user@host`` rows: a locked row, or one shadowed by a more specific row of the same
user (or an anonymous one), is refused; a new password logs in as the very row that was changed;
a snapshot is the row's plugin and hash, and a forged plugin is never restored; and neither the
general log nor the binary log ever holds a plaintext password.
"""

from __future__ import annotations

import pytest

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import (
    AccountLocked,
    AccountShadowed,
    Conflict,
    InternalError,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.mysql_accounts import split_account
from tests.support.logins import mysql_login
from tests.support.mysql_server import MariaDBServer, native_hash
from tests.support.sql_admin import create_user, mysql_node, mysql_sql, stored_hash

pytestmark = pytest.mark.engine

TIMEOUT = 3.0
#: User names only MySQL takes (the account is what follows the last ``@``).
ODD_USERS = ["with space", "Ünïcødé Üser", "mail@example.com"]


def login_as(server: MariaDBServer, user: str, password: str) -> str | None:
    """The ``CURRENT_USER()`` a TCP login gets, or None if the login is refused."""
    row = mysql_login(server.port, user, password, "SELECT CURRENT_USER()")
    return None if row is None else str(row[0])


# --------------------------------------------------------------------------- basics


def test_split_account() -> None:
    assert split_account("app@%") == ("app", "%")
    assert split_account("mail@example.com@127.0.0.1") == ("mail@example.com", "127.0.0.1")
    assert split_account("app") == ("app", "%")
    assert native_hash("secret") == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"


async def test_probe_tells_superusers(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    """Global SUPER (or ALL PRIVILEGES ON *.*) or CREATE USER controls the server."""
    for user in ("app", "dba", "all", "creator"):
        create_user(mariadb_server, user, "%", f"{user}-pw-1")
    mysql_sql(mariadb_server, "GRANT SELECT, INSERT ON *.* TO 'app'@'%%'")
    mysql_sql(mariadb_server, "GRANT SUPER ON *.* TO 'dba'@'%%'")
    mysql_sql(mariadb_server, "GRANT ALL PRIVILEGES ON *.* TO 'all'@'%%'")
    mysql_sql(mariadb_server, "GRANT CREATE USER ON *.* TO 'creator'@'%%'")
    node = mysql_node(mariadb_server)
    found = {
        name: (await mysql_engine.probe(node, name)).superuser
        for name in ("app@%", "dba@%", "all@%", "creator@%", "ROOT@127.0.0.1", "nobody@%")
    }
    assert found == {
        "app@%": False,
        "dba@%": True,
        "all@%": True,
        "creator@%": True,
        "ROOT@127.0.0.1": None,  # user names are case-sensitive: no such row
        "nobody@%": None,
    }
    assert (await mysql_engine.probe(node, "root@LOCALHOST")).superuser is True  # hosts are not
    assert (await mysql_engine.probe(node)).superuser is None


async def test_list_accounts(mysql_engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    create_user(mariadb_server, "app", "%", "app-pw-1")
    mysql_sql(mariadb_server, "ALTER USER 'app'@'%%' ACCOUNT LOCK")
    mysql_sql(mariadb_server, "CREATE USER 'open'@'10.0.0.%%'")
    accounts = {a.name: a for a in await mysql_engine.list_accounts(mysql_node(mariadb_server))}
    assert {"root@localhost", "root@127.0.0.1", "app@%", "open@10.0.0.%"} <= set(accounts)
    assert not any(name.startswith("root@") and name not in accounts for name in accounts)
    assert accounts["root@127.0.0.1"].enabled and not accounts["root@127.0.0.1"].password_free
    assert not accounts["app@%"].enabled
    assert accounts["open@10.0.0.%"].password_free


async def test_install_db_root_rows_are_gone(mariadb_server: MariaDBServer) -> None:
    rows = mariadb_server.socket_sql("SELECT CONCAT(User, '@', Host) FROM mysql.user")
    assert sorted(rows.split()) == ["mariadb.sys@localhost", "root@127.0.0.1", "root@localhost"]
    assert login_as(mariadb_server, "root", "") is None


# --------------------------------------------------------------------------- target checks


async def test_locked_account_is_reported(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "app-pw-1")
    mysql_sql(mariadb_server, "ALTER USER 'app'@'%%' ACCOUNT LOCK")
    node = mysql_node(mariadb_server)
    with pytest.raises(AccountLocked) as caught:
        await mysql_engine.snapshot(node, "app@%")
    assert caught.value.code == "AccountLocked"
    assert isinstance(caught.value, Conflict)
    with pytest.raises(AccountLocked):
        await mysql_engine.set_password(node, "app@%", Secret("App-new-pw-1"))
    assert stored_hash(mariadb_server, "app", "%") == native_hash("app-pw-1")


@pytest.mark.parametrize("shadow", ["127.0.0.1", "localhost", "127.0.0.%"])
async def test_shadowed_account_is_reported(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer, shadow: str
) -> None:
    create_user(mariadb_server, "app", "%", "app-pw-1")
    create_user(mariadb_server, "app", shadow, "app-shadow-pw")
    node = mysql_node(mariadb_server)
    with pytest.raises(AccountShadowed) as caught:
        await mysql_engine.snapshot(node, "app@%")
    assert caught.value.code == "AccountShadowed"
    assert repr(shadow) in caught.value.message
    assert "app-pw-1" not in caught.value.message
    with pytest.raises(AccountShadowed):
        await mysql_engine.set_password(node, "app@%", Secret("App-new-pw-1"))
    assert stored_hash(mariadb_server, "app", "%") == native_hash("app-pw-1")
    # The more specific row itself can be reset.
    if shadow != "localhost":
        await mysql_engine.set_password(node, f"app@{shadow}", Secret("App-new-pw-2"))
        await mysql_engine.verify(node, f"app@{shadow}", Secret("App-new-pw-2"))


async def test_anonymous_row_shadows(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "app-pw-1")
    mysql_sql(mariadb_server, "CREATE USER ''@'127.0.0.1'")
    with pytest.raises(AccountShadowed):
        await mysql_engine.snapshot(mysql_node(mariadb_server), "app@%")


async def test_other_users_do_not_shadow(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "app-pw-1")
    create_user(mariadb_server, "app2", "127.0.0.1", "app2-pw-1")
    create_user(mariadb_server, "app", "10.0.0.1", "app-far-pw")  # other clients only
    node = mysql_node(mariadb_server)
    # A literal host of the same user is matched by '%' too, so it shadows it for that client.
    with pytest.raises(AccountShadowed, match=r"10\.0\.0\.1"):
        await mysql_engine.snapshot(node, "app@%")
    mysql_sql(mariadb_server, "DROP USER 'app'@'10.0.0.1'")
    await mysql_engine.snapshot(node, "app@%")


# --------------------------------------------------------------------------- reset and restore


async def test_verify_refuses_a_login_taken_by_another_row(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "same-pw-1")
    create_user(mariadb_server, "app", "127.0.0.1", "same-pw-1")
    with pytest.raises(VerificationFailed, match="another account row"):
        await mysql_engine.verify(mysql_node(mariadb_server), "app@%", Secret("same-pw-1"))


async def test_non_ascii_password(mysql_engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    create_user(mariadb_server, "app", "%", "old-app-pw")
    password = "pässwörd ☃ 密码"
    node = mysql_node(mariadb_server)
    await mysql_engine.set_password(node, "app@%", Secret(password))
    await mysql_engine.verify(node, "app@%", Secret(password))
    assert login_as(mariadb_server, "app", password) == "app@%"
    assert stored_hash(mariadb_server, "app", "%") == native_hash(password)


async def test_the_snapshot_is_the_rows_plugin_and_hash(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "old-app-pw")
    node = mysql_node(mariadb_server)
    snap = await mysql_engine.snapshot(node, "app@%")
    assert snap.data == {
        "plugin": "mysql_native_password",
        "authentication_string": native_hash("old-app-pw"),
    }
    await mysql_engine.set_password(node, "app@%", Secret("New-app-pw-1"))
    assert stored_hash(mariadb_server, "app", "%") == native_hash("New-app-pw-1")
    await mysql_engine.restore(node, snap)
    assert stored_hash(mariadb_server, "app", "%") == native_hash("old-app-pw")
    assert login_as(mariadb_server, "app", "old-app-pw") == "app@%"


@pytest.mark.parametrize("user", ODD_USERS)
async def test_user_names_with_spaces_and_at_signs(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer, user: str
) -> None:
    create_user(mariadb_server, user, "%", "odd-old-pw")
    node = mysql_node(mariadb_server)
    account = f"{user}@%"
    snap = await mysql_engine.snapshot(node, account)
    await mysql_engine.set_password(node, account, Secret("Odd-new-pw-1"))
    await mysql_engine.verify(node, account, Secret("Odd-new-pw-1"))
    assert login_as(mariadb_server, user, "Odd-new-pw-1") == account
    await mysql_engine.restore(node, snap)
    assert login_as(mariadb_server, user, "odd-old-pw") == account


async def test_restore_of_an_empty_password(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    mysql_sql(mariadb_server, "CREATE USER 'nopw'@'%%'")
    node = mysql_node(mariadb_server)
    snap = await mysql_engine.snapshot(node, "nopw@%")
    assert snap.data["authentication_string"] == ""
    await mysql_engine.set_password(node, "nopw@%", Secret("Nopw-new-1"))
    assert login_as(mariadb_server, "nopw", "") is None
    await mysql_engine.restore(node, snap)
    assert login_as(mariadb_server, "nopw", "") == "nopw@%"


async def test_restore_rejects_a_forged_plugin(
    mysql_engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", "old-app-pw")
    snap = CredentialSnapshot(
        account="app@%",
        data={"plugin": "x USING '' ACCOUNT LOCK --", "authentication_string": ""},
    )
    with pytest.raises(InternalError, match="invalid plugin"):
        await mysql_engine.restore(mysql_node(mariadb_server), snap)
    assert login_as(mariadb_server, "app", "old-app-pw") == "app@%"


# --------------------------------------------------------------------------- failures


def test_tls_only_when_asked_and_one_context_reused() -> None:
    driver = MySQLEngine(timeout=TIMEOUT)
    plain = parse_node_url("mysql://root:pw@127.0.0.1:3307", EngineKind.MYSQL)
    assert driver._ssl_context(plain) is None
    tls = parse_node_url("mysql://root:pw@127.0.0.1:3307?ssl-mode=REQUIRED", EngineKind.MYSQL)
    first = driver._ssl_context(tls)
    assert first is not None
    assert driver._ssl_context(tls) is first

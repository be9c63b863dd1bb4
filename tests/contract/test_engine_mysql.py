"""Contract tests of ``MySQLEngine`` against real, throwaway MariaDB 10.11 servers.

Every claim is checked from outside the engine as well, with raw aiomysql connections: a new
password logs in (as the very row that was changed) and the old one is refused, the restored
row holds its old hash, an odd account name alters nothing else, and neither the general log
nor the binary log ever holds a plaintext password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]
import pytest

from keyturn.core.errors import (
    AccountLocked,
    AccountNotFound,
    AccountShadowed,
    Conflict,
    EngineUnavailable,
    InternalError,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.ports import CredentialSnapshot, Engine
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine, split_account
from keyturn.engines.registry import EngineRegistry
from tests.support.mysql_server import MariaDBServer, native_hash

pytestmark = pytest.mark.engine

TIMEOUT = 3.0
ODD_USERS = [
    "qu'ote",
    'dq"uote',
    "back\\slash",
    "with space",
    "pct%_under",
    "Ünïcødé Üser",
    "mail@example.com",
]


@pytest.fixture
async def engine() -> AsyncIterator[MySQLEngine]:
    driver = MySQLEngine(timeout=TIMEOUT)
    yield driver
    await driver.close()


def node_of(server: MariaDBServer, user: str = "root", password: str | None = None) -> Node:
    address = parse_node_url(server.url(user, password), EngineKind.MYSQL)
    return Node(instance_id="cdb-test0001", ordinal=0, address=address)


async def connect(server: MariaDBServer, user: str = "root", password: str | None = None) -> Any:
    secret = server.password if password is None else password
    return await aiomysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=secret.encode().decode("latin-1"),
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
    )


async def admin_sql(server: MariaDBServer, statement: str, args: tuple[Any, ...] = ()) -> None:
    """Run one statement as root (setup only; passwords only ever as hashes)."""
    conn = await connect(server)
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement, args)
    finally:
        await conn.ensure_closed()


async def create_user(server: MariaDBServer, user: str, host: str, password: str) -> None:
    await admin_sql(
        server, "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, native_hash(password))
    )


async def login_as(server: MariaDBServer, user: str, password: str) -> str | None:
    """The ``CURRENT_USER()`` a TCP login gets, or None if the login is refused."""
    try:
        conn = await connect(server, user, password)
    except pymysql.err.OperationalError:
        return None
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT CURRENT_USER()")
            row = await cur.fetchone()
    finally:
        await conn.ensure_closed()
    return str(row[0])


async def stored_hash(server: MariaDBServer, user: str, host: str) -> str:
    conn = await connect(server)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT authentication_string FROM mysql.user WHERE User = %s AND Host = %s",
                (user, host),
            )
            row = await cur.fetchone()
    finally:
        await conn.ensure_closed()
    assert row is not None
    return str(row[0])


# --------------------------------------------------------------------------- basics


def test_split_account() -> None:
    assert split_account("app@%") == ("app", "%")
    assert split_account("mail@example.com@127.0.0.1") == ("mail@example.com", "127.0.0.1")
    assert split_account("app") == ("app", "%")
    assert native_hash("secret") == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"


async def test_registry_serves_mysql() -> None:
    registry = EngineRegistry(TIMEOUT)
    driver: Engine = registry.engine(EngineKind.MYSQL)
    assert isinstance(driver, MySQLEngine)
    assert driver.kind is EngineKind.MYSQL
    await registry.close()


async def test_probe(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    info = await engine.probe(node_of(mariadb_server), "root@127.0.0.1")
    assert info.version.startswith("10.11.")
    assert "MariaDB" in info.version
    assert info.accounts is True
    assert info.password_free is None
    assert info.superuser is True


async def test_probe_tells_superusers(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    """Global SUPER (or ALL PRIVILEGES ON *.*) or CREATE USER controls the server."""
    for user in ("app", "dba", "all", "creator"):
        await create_user(mariadb_server, user, "%", f"{user}-pw-1")
    await admin_sql(mariadb_server, "GRANT SELECT, INSERT ON *.* TO 'app'@'%%'")
    await admin_sql(mariadb_server, "GRANT SUPER ON *.* TO 'dba'@'%%'")
    await admin_sql(mariadb_server, "GRANT ALL PRIVILEGES ON *.* TO 'all'@'%%'")
    await admin_sql(mariadb_server, "GRANT CREATE USER ON *.* TO 'creator'@'%%'")
    node = node_of(mariadb_server)
    found = {
        name: (await engine.probe(node, name)).superuser
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
    assert (await engine.probe(node, "root@LOCALHOST")).superuser is True  # hosts are not
    assert (await engine.probe(node)).superuser is None


async def test_list_accounts(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    await admin_sql(mariadb_server, "ALTER USER 'app'@'%%' ACCOUNT LOCK")
    await admin_sql(mariadb_server, "CREATE USER 'open'@'10.0.0.%%'")
    accounts = {a.name: a for a in await engine.list_accounts(node_of(mariadb_server))}
    assert {"root@localhost", "root@127.0.0.1", "app@%", "open@10.0.0.%"} <= set(accounts)
    assert not any(name.startswith("root@") and name not in accounts for name in accounts)
    assert accounts["root@127.0.0.1"].enabled and not accounts["root@127.0.0.1"].password_free
    assert not accounts["app@%"].enabled
    assert accounts["open@10.0.0.%"].password_free


async def test_password_free_is_unsupported(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    node = node_of(mariadb_server)
    with pytest.raises(UnsupportedFeature):
        await engine.set_password_free(node, "root@127.0.0.1")
    with pytest.raises(UnsupportedFeature):
        await engine.verify(node, "root@127.0.0.1", None)


async def test_install_db_root_rows_are_gone(mariadb_server: MariaDBServer) -> None:
    rows = mariadb_server.socket_sql("SELECT CONCAT(User, '@', Host) FROM mysql.user")
    assert sorted(rows.split()) == ["mariadb.sys@localhost", "root@127.0.0.1", "root@localhost"]
    assert await login_as(mariadb_server, "root", "") is None


# --------------------------------------------------------------------------- target checks


async def test_missing_account(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    node = node_of(mariadb_server)
    for name in ("nobody@%", "app@10.1.1.1", "app@localhost"):
        with pytest.raises(AccountNotFound):
            await engine.snapshot(node, name)
        with pytest.raises(AccountNotFound):
            await engine.set_password(node, name, Secret("Whatever-1"))
    snap = CredentialSnapshot(
        account="nobody@%",
        data={"plugin": "mysql_native_password", "authentication_string": native_hash("x")},
    )
    with pytest.raises(AccountNotFound):
        await engine.restore(node, snap)


async def test_locked_account_is_reported(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    await admin_sql(mariadb_server, "ALTER USER 'app'@'%%' ACCOUNT LOCK")
    node = node_of(mariadb_server)
    with pytest.raises(AccountLocked) as caught:
        await engine.snapshot(node, "app@%")
    assert caught.value.code == "AccountLocked"
    assert isinstance(caught.value, Conflict)
    with pytest.raises(AccountLocked):
        await engine.set_password(node, "app@%", Secret("App-new-pw-1"))
    assert await stored_hash(mariadb_server, "app", "%") == native_hash("app-pw-1")


@pytest.mark.parametrize("shadow", ["127.0.0.1", "localhost", "127.0.0.%"])
async def test_shadowed_account_is_reported(
    engine: MySQLEngine, mariadb_server: MariaDBServer, shadow: str
) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    await create_user(mariadb_server, "app", shadow, "app-shadow-pw")
    node = node_of(mariadb_server)
    with pytest.raises(AccountShadowed) as caught:
        await engine.snapshot(node, "app@%")
    assert caught.value.code == "AccountShadowed"
    assert repr(shadow) in caught.value.message
    assert "app-pw-1" not in caught.value.message
    with pytest.raises(AccountShadowed):
        await engine.set_password(node, "app@%", Secret("App-new-pw-1"))
    assert await stored_hash(mariadb_server, "app", "%") == native_hash("app-pw-1")
    # The more specific row itself can be reset.
    if shadow != "localhost":
        await engine.set_password(node, f"app@{shadow}", Secret("App-new-pw-2"))
        await engine.verify(node, f"app@{shadow}", Secret("App-new-pw-2"))


async def test_anonymous_row_shadows(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    await admin_sql(mariadb_server, "CREATE USER ''@'127.0.0.1'")
    with pytest.raises(AccountShadowed):
        await engine.snapshot(node_of(mariadb_server), "app@%")


async def test_other_users_do_not_shadow(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    await create_user(mariadb_server, "app2", "127.0.0.1", "app2-pw-1")
    await create_user(mariadb_server, "app", "10.0.0.1", "app-far-pw")  # other clients only
    node = node_of(mariadb_server)
    # A literal host of the same user is matched by '%' too, so it shadows it for that client.
    with pytest.raises(AccountShadowed, match=r"10\.0\.0\.1"):
        await engine.snapshot(node, "app@%")
    await admin_sql(mariadb_server, "DROP USER 'app'@'10.0.0.1'")
    await engine.snapshot(node, "app@%")


# --------------------------------------------------------------------------- reset and restore


async def test_set_password_and_verify(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "old-app-pw")
    node = node_of(mariadb_server)
    result = await engine.set_password(node, "app@%", Secret("New-app-pw-1"))
    assert result.persisted
    await engine.verify(node, "app@%", Secret("New-app-pw-1"))
    assert await login_as(mariadb_server, "app", "New-app-pw-1") == "app@%"
    assert await login_as(mariadb_server, "app", "old-app-pw") is None
    assert await stored_hash(mariadb_server, "app", "%") == native_hash("New-app-pw-1")

    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(node, "app@%", Secret("old-app-pw"))
    assert "old-app-pw" not in str(caught.value)
    assert mariadb_server.password not in str(caught.value)
    assert node.address.endpoint in str(caught.value)


async def test_verify_refuses_a_login_taken_by_another_row(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "same-pw-1")
    await create_user(mariadb_server, "app", "127.0.0.1", "same-pw-1")
    with pytest.raises(VerificationFailed, match="another account row"):
        await engine.verify(node_of(mariadb_server), "app@%", Secret("same-pw-1"))


async def test_non_ascii_password(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "old-app-pw")
    password = "pässwörd ☃ 密码"
    node = node_of(mariadb_server)
    await engine.set_password(node, "app@%", Secret(password))
    await engine.verify(node, "app@%", Secret(password))
    assert await login_as(mariadb_server, "app", password) == "app@%"
    assert await stored_hash(mariadb_server, "app", "%") == native_hash(password)


async def test_restore_brings_back_the_old_password(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "old-app-pw")
    node = node_of(mariadb_server)
    snap = await engine.snapshot(node, "app@%")
    assert snap.account == "app@%"
    assert snap.data == {
        "plugin": "mysql_native_password",
        "authentication_string": native_hash("old-app-pw"),
    }
    await engine.set_password(node, "app@%", Secret("New-app-pw-1"))
    result = await engine.restore(node, snap)
    assert result.persisted
    await engine.restore(node, snap)  # idempotent
    assert await stored_hash(mariadb_server, "app", "%") == native_hash("old-app-pw")
    assert await login_as(mariadb_server, "app", "old-app-pw") == "app@%"
    assert await login_as(mariadb_server, "app", "New-app-pw-1") is None


async def test_restore_of_an_empty_password(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await admin_sql(mariadb_server, "CREATE USER 'nopw'@'%%'")
    node = node_of(mariadb_server)
    snap = await engine.snapshot(node, "nopw@%")
    assert snap.data["authentication_string"] == ""
    await engine.set_password(node, "nopw@%", Secret("Nopw-new-1"))
    assert await login_as(mariadb_server, "nopw", "") is None
    await engine.restore(node, snap)
    assert await login_as(mariadb_server, "nopw", "") == "nopw@%"


async def test_restore_rejects_a_forged_plugin(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "old-app-pw")
    snap = CredentialSnapshot(
        account="app@%",
        data={"plugin": "x USING '' ACCOUNT LOCK --", "authentication_string": ""},
    )
    with pytest.raises(InternalError, match="invalid plugin"):
        await engine.restore(node_of(mariadb_server), snap)
    assert await login_as(mariadb_server, "app", "old-app-pw") == "app@%"


@pytest.mark.parametrize("user", ODD_USERS)
async def test_odd_account_names(
    engine: MySQLEngine, mariadb_server: MariaDBServer, user: str
) -> None:
    await create_user(mariadb_server, user, "%", "odd-old-pw")
    await create_user(mariadb_server, user + "_other", "%", "other-pw")
    node = node_of(mariadb_server)
    account = f"{user}@%"
    snap = await engine.snapshot(node, account)
    await engine.set_password(node, account, Secret("Odd-new-pw-1"))
    await engine.verify(node, account, Secret("Odd-new-pw-1"))
    assert await login_as(mariadb_server, user, "Odd-new-pw-1") == account
    assert await login_as(mariadb_server, user, "odd-old-pw") is None
    assert await login_as(mariadb_server, user + "_other", "other-pw") is not None
    await engine.restore(node, snap)
    assert await login_as(mariadb_server, user, "odd-old-pw") == account
    assert account in {a.name for a in await engine.list_accounts(node)}


async def test_injection_in_an_account_name_is_only_a_name(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "x", "%", "x-pw-1")
    node = node_of(mariadb_server)
    for evil in (
        "x'@'%' IDENTIFIED BY PASSWORD '' -- @%",
        "x@%' IDENTIFIED VIA mysql_native_password USING '' -- ",
        "x\\'@%",
    ):
        with pytest.raises(AccountNotFound):
            await engine.snapshot(node, evil)
        with pytest.raises(AccountNotFound):
            await engine.set_password(node, evil, Secret("Evil-pw-1"))
        snap = CredentialSnapshot(
            account=evil, data={"plugin": "mysql_native_password", "authentication_string": ""}
        )
        with pytest.raises(AccountNotFound):
            await engine.restore(node, snap)
    assert await stored_hash(mariadb_server, "x", "%") == native_hash("x-pw-1")
    assert await login_as(mariadb_server, "x", "x-pw-1") == "x@%"
    assert await login_as(mariadb_server, "x", "") is None


async def test_logs_never_hold_plaintext(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    await create_user(mariadb_server, "app", "%", "setup-pw-1")
    node = node_of(mariadb_server)
    used = ["Plain-Leak-Check-1", "Plain-Leak-Check-2"]
    snap = await engine.snapshot(node, "app@%")
    for password in used:
        await engine.set_password(node, "app@%", Secret(password))
        await engine.verify(node, "app@%", Secret(password))
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, "nobody@%", Secret("Plain-Leak-Check-3"))
    with pytest.raises(VerificationFailed):
        await engine.verify(node, "app@%", Secret("Plain-Leak-Check-4"))
    await engine.restore(node, snap)
    general = mariadb_server.general_log_text()
    binlog = mariadb_server.binlog_text()
    assert "ALTER USER" in general  # the general log is on and saw the changes
    assert "ALTER USER" in binlog  # so is the binary log
    assert native_hash(used[0]) in binlog
    for password in [*used, "Plain-Leak-Check-3", "Plain-Leak-Check-4", mariadb_server.password]:
        assert password not in general
        assert password not in binlog


# --------------------------------------------------------------------------- failures


async def test_node_down_is_unavailable(engine: MySQLEngine, mariadb_server: MariaDBServer) -> None:
    await create_user(mariadb_server, "app", "%", "app-pw-1")
    node = node_of(mariadb_server)
    await engine.probe(node)  # pooled connection now open
    mariadb_server.stop()
    with pytest.raises(EngineUnavailable):
        await engine.probe(node)
    with pytest.raises(EngineUnavailable):
        await engine.set_password(node, "app@%", Secret("App-new-1"))
    with pytest.raises(EngineUnavailable):
        await engine.verify(node, "app@%", Secret("app-pw-1"))
    mariadb_server.start()
    await engine.probe(node)  # reconnects after the outage
    await engine.set_password(node, "app@%", Secret("App-new-1"))
    await engine.verify(node, "app@%", Secret("App-new-1"))


async def test_wrong_admin_password_is_unavailable(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    node = node_of(mariadb_server, password="not-the-admin-pw")
    with pytest.raises(EngineUnavailable, match="admin login") as caught:
        await engine.probe(node)
    assert "not-the-admin-pw" not in str(caught.value)


async def test_admin_resets_its_own_account(
    engine: MySQLEngine, mariadb_server: MariaDBServer
) -> None:
    old = mariadb_server.password
    node = replace(node_of(mariadb_server), pending_password=Secret("Admin-new-pw-1"))
    await engine.probe(node)
    await engine.set_password(node, "root@127.0.0.1", Secret("Admin-new-pw-1"))
    await engine.verify(node, "root@127.0.0.1", Secret("Admin-new-pw-1"))
    await engine.probe(node)  # the pooled connection survives its own reset
    await engine.forget(node)  # the next admin login must fall back to the pending password
    info = await engine.probe(node)
    assert "MariaDB" in info.version
    assert await login_as(mariadb_server, "root", old) is None

    # Without the pending password the old credential no longer logs in ...
    stale = node_of(mariadb_server, password=old)
    with pytest.raises(EngineUnavailable, match="admin login"):
        await engine.probe(stale)
    # ... and once promoted, the new one is used directly.
    promoted = node_of(mariadb_server, password="Admin-new-pw-1")
    await engine.snapshot(promoted, "root@127.0.0.1")
    assert "Admin-new-pw-1" not in mariadb_server.general_log_text()


def test_tls_only_when_asked_and_one_context_reused() -> None:
    driver = MySQLEngine(timeout=TIMEOUT)
    plain = parse_node_url("mysql://root:pw@127.0.0.1:3307", EngineKind.MYSQL)
    assert driver._ssl_context(plain) is None
    tls = parse_node_url("mysql://root:pw@127.0.0.1:3307?ssl-mode=REQUIRED", EngineKind.MYSQL)
    first = driver._ssl_context(tls)
    assert first is not None
    assert driver._ssl_context(tls) is first

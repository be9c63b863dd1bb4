"""Contract tests of ``PostgresEngine`` against real, throwaway PostgreSQL 15 servers.

Every claim is checked from outside the engine as well, with raw psycopg connections: a new
password logs in and the old one is refused, ``pg_authid`` holds the restored verifier, an odd
role name alters nothing else, and the server log (``log_statement=all``) never holds a
plaintext password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import psycopg
import pytest
from psycopg import sql

from keyturn.core.errors import (
    AccountCannotLogin,
    AccountNotFound,
    AccountPermissionDenied,
    EngineRejected,
    EngineUnavailable,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.ports import CredentialSnapshot, Engine
from keyturn.core.secrets import Secret
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.registry import EngineRegistry
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.engine

TIMEOUT = 3.0
ODD_NAMES = [
    'qu"ote',
    "back\\slash",
    "with space",
    "pct%_under",
    "Ünïcødé Rôle",
    "MixedCase",
    "semi;colon'apos",
]


@pytest.fixture
async def engine() -> AsyncIterator[PostgresEngine]:
    driver = PostgresEngine(timeout=TIMEOUT)
    yield driver
    await driver.close()


def node_of(server: PostgresServer, user: str = "postgres", password: str | None = None) -> Node:
    address = parse_node_url(server.url(user, password), EngineKind.POSTGRES)
    return Node(instance_id="postgres-test0001", ordinal=0, address=address)


async def connect(
    server: PostgresServer, user: str = "postgres", password: str | None = None
) -> psycopg.AsyncConnection[tuple[object, ...]]:
    return await psycopg.AsyncConnection.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=server.password if password is None else password,
        dbname="postgres",
        connect_timeout=5,
        autocommit=True,
    )


async def admin_sql(server: PostgresServer, statement: sql.Composable | str) -> None:
    """Run one statement as the superuser (test setup only; never with a plaintext password
    that a test later greps for)."""
    async with await connect(server) as conn:
        await conn.execute(statement if not isinstance(statement, str) else sql.SQL(statement))


async def create_role(
    server: PostgresServer, name: str, password: str | None = None, extra: str = "LOGIN"
) -> None:
    parts: list[sql.Composable] = [sql.SQL("CREATE ROLE {} ").format(sql.Identifier(name))]
    parts.append(sql.SQL(extra))
    if password is not None:
        async with await connect(server) as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), name.encode(), b"scram-sha-256"
            ).decode()
        parts.append(sql.SQL(" PASSWORD {}").format(sql.Literal(verifier)))
    await admin_sql(server, sql.Composed(parts))


async def logs_in(server: PostgresServer, user: str, password: str) -> bool:
    try:
        conn = await connect(server, user, password)
    except psycopg.OperationalError:
        return False
    await conn.close()
    return True


async def stored_verifier(server: PostgresServer, role: str) -> str | None:
    async with await connect(server) as conn:
        cur = await conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        row = await cur.fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


# --------------------------------------------------------------------------- basics


async def test_registry_serves_postgres() -> None:
    registry = EngineRegistry(TIMEOUT)
    driver: Engine = registry.engine(EngineKind.POSTGRES)
    assert isinstance(driver, PostgresEngine)
    assert driver.kind is EngineKind.POSTGRES
    await registry.close()


async def test_probe(engine: PostgresEngine, postgres_server: PostgresServer) -> None:
    info = await engine.probe(node_of(postgres_server), "postgres")
    assert info.version.startswith("15.")
    assert info.accounts is True
    assert info.password_free is None
    assert info.superuser is True


async def test_probe_tells_superusers(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "app-pw-1")
    await create_role(postgres_server, "root2", "root-pw-1", "LOGIN SUPERUSER")
    node = node_of(postgres_server)
    assert (await engine.probe(node, "app")).superuser is False
    assert (await engine.probe(node, "root2")).superuser is True
    assert (await engine.probe(node, "nobody")).superuser is None
    assert (await engine.probe(node)).superuser is None


async def test_list_accounts(engine: PostgresEngine, postgres_server: PostgresServer) -> None:
    await create_role(postgres_server, "app", "app-pw-1")
    await create_role(postgres_server, "nologin", extra="NOLOGIN")
    await create_role(postgres_server, "expired", "exp-pw-1", "LOGIN VALID UNTIL '2001-01-01'")
    await create_role(postgres_server, "forever", "f-pw-1", "LOGIN VALID UNTIL 'infinity'")
    accounts = {a.name: a for a in await engine.list_accounts(node_of(postgres_server))}
    assert set(accounts) == {"postgres", "app", "expired", "forever"}
    assert accounts["app"].enabled and accounts["forever"].enabled
    assert not accounts["expired"].enabled
    assert all(not a.password_free and a.privilege == "rw" for a in accounts.values())


async def test_password_free_is_unsupported(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    node = node_of(postgres_server)
    with pytest.raises(UnsupportedFeature):
        await engine.set_password_free(node, "postgres")
    with pytest.raises(UnsupportedFeature):
        await engine.verify(node, "postgres", None)


# --------------------------------------------------------------------------- target checks


async def test_missing_role(engine: PostgresEngine, postgres_server: PostgresServer) -> None:
    node = node_of(postgres_server)
    with pytest.raises(AccountNotFound):
        await engine.snapshot(node, "no_such_role")
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, "no_such_role", Secret("Whatever-1"))
    snap = CredentialSnapshot(
        account="no_such_role", data={"verifier": None, "verifier_readable": True}
    )
    with pytest.raises(AccountNotFound):
        await engine.restore(node, snap)


@pytest.mark.parametrize(
    "extra", ["NOLOGIN", "LOGIN VALID UNTIL '2001-01-01 00:00:00+00'"], ids=["nologin", "expired"]
)
async def test_role_that_cannot_log_in(
    engine: PostgresEngine, postgres_server: PostgresServer, extra: str
) -> None:
    await create_role(postgres_server, "stuck", "stuck-pw-1", extra)
    node = node_of(postgres_server)
    with pytest.raises(AccountCannotLogin) as caught:
        await engine.snapshot(node, "stuck")
    assert caught.value.code == "AccountCannotLogin"
    with pytest.raises(AccountCannotLogin):
        await engine.set_password(node, "stuck", Secret("New-stuck-pw-2"))
    assert await stored_verifier(postgres_server, "stuck") is not None
    if extra == "NOLOGIN":
        return
    assert not await logs_in(postgres_server, "stuck", "stuck-pw-1")


async def test_superuser_target_with_createrole_admin(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "manager", "manager-pw-1", "LOGIN CREATEROLE")
    await create_role(postgres_server, "root2", "root2-pw-1", "LOGIN SUPERUSER")
    await create_role(postgres_server, "app", "app-pw-1")
    node = node_of(postgres_server, "manager", "manager-pw-1")
    with pytest.raises(AccountPermissionDenied) as caught:
        await engine.snapshot(node, "root2")
    assert caught.value.code == "AccountPermissionDenied"
    assert isinstance(caught.value, EngineRejected)
    with pytest.raises(AccountPermissionDenied):
        await engine.set_password(node, "root2", Secret("Root2-new-pw"))
    assert await logs_in(postgres_server, "root2", "root2-pw-1")

    # An ordinary role can be reset, but pg_authid is unreadable: no rollback possible.
    snap = await engine.snapshot(node, "app")
    assert snap.data["verifier"] is None
    assert snap.data["verifier_readable"] is False
    assert snap.data["superuser"] is False
    await engine.set_password(node, "app", Secret("App-new-pw-2"))
    await engine.verify(node, "app", Secret("App-new-pw-2"))
    with pytest.raises(EngineRejected, match="cannot restore"):
        await engine.restore(node, snap)


# --------------------------------------------------------------------------- reset and restore


async def test_set_password_and_verify(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "old-app-pw")
    node = node_of(postgres_server)
    result = await engine.set_password(node, "app", Secret("New-app-pw-1"))
    assert result.persisted
    await engine.verify(node, "app", Secret("New-app-pw-1"))
    assert await logs_in(postgres_server, "app", "New-app-pw-1")
    assert not await logs_in(postgres_server, "app", "old-app-pw")
    verifier = await stored_verifier(postgres_server, "app")
    assert verifier is not None and verifier.startswith("SCRAM-SHA-256$4096:")

    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(node, "app", Secret("old-app-pw"))
    assert "old-app-pw" not in str(caught.value)
    assert postgres_server.password not in str(caught.value)
    assert node.address.endpoint in str(caught.value)


async def test_non_ascii_password_is_saslprepped(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "old-app-pw")
    password = "pässwörd ☃ ﬁ"  # U+FB01 is mapped by SASLprep (NFKC)
    await engine.set_password(node_of(postgres_server), "app", Secret(password))
    await engine.verify(node_of(postgres_server), "app", Secret(password))
    assert await logs_in(postgres_server, "app", password)


async def test_restore_brings_back_the_old_password(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "old-app-pw")
    node = node_of(postgres_server)
    before = await stored_verifier(postgres_server, "app")
    snap = await engine.snapshot(node, "app")
    assert snap.data == {"verifier": before, "verifier_readable": True, "superuser": False}
    await engine.set_password(node, "app", Secret("New-app-pw-1"))
    result = await engine.restore(node, snap)
    assert result.persisted
    await engine.restore(node, snap)  # idempotent
    assert await stored_verifier(postgres_server, "app") == before
    assert await logs_in(postgres_server, "app", "old-app-pw")
    assert not await logs_in(postgres_server, "app", "New-app-pw-1")


async def test_restore_of_a_null_password(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "nopw")
    node = node_of(postgres_server)
    snap = await engine.snapshot(node, "nopw")
    assert snap.data["verifier"] is None and snap.data["verifier_readable"] is True
    await engine.set_password(node, "nopw", Secret("Nopw-new-1"))
    assert await stored_verifier(postgres_server, "nopw") is not None
    await engine.restore(node, snap)
    assert await stored_verifier(postgres_server, "nopw") is None


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_role_names(
    engine: PostgresEngine, postgres_server: PostgresServer, name: str
) -> None:
    await create_role(postgres_server, name, "odd-old-pw")
    await create_role(postgres_server, name.lower() + "_other", "other-pw")
    node = node_of(postgres_server)
    snap = await engine.snapshot(node, name)
    await engine.set_password(node, name, Secret("Odd-new-pw-1"))
    await engine.verify(node, name, Secret("Odd-new-pw-1"))
    assert await logs_in(postgres_server, name, "Odd-new-pw-1")
    assert not await logs_in(postgres_server, name, "odd-old-pw")
    assert await logs_in(postgres_server, name.lower() + "_other", "other-pw")
    await engine.restore(node, snap)
    assert await logs_in(postgres_server, name, "odd-old-pw")


async def test_injection_in_a_role_name_is_only_a_name(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "x", "x-pw-1")
    node = node_of(postgres_server)
    evil = 'x" PASSWORD NULL; --'
    with pytest.raises(AccountNotFound):
        await engine.snapshot(node, evil)
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, evil, Secret("Evil-pw-1"))
    snap = CredentialSnapshot(account=evil, data={"verifier": None, "verifier_readable": True})
    with pytest.raises(AccountNotFound):
        await engine.restore(node, snap)
    assert await stored_verifier(postgres_server, "x") is not None
    assert await logs_in(postgres_server, "x", "x-pw-1")
    accounts = {a.name for a in await engine.list_accounts(node)}
    assert accounts == {"postgres", "x"}


async def test_server_log_never_holds_plaintext(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "setup-pw-1")
    node = node_of(postgres_server)
    used = ["Plain-Leak-Check-1", "Plain-Leak-Check-2"]
    snap = await engine.snapshot(node, "app")
    for password in used:
        await engine.set_password(node, "app", Secret(password))
        await engine.verify(node, "app", Secret(password))
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, "no_such_role", Secret("Plain-Leak-Check-3"))
    with pytest.raises(VerificationFailed):
        await engine.verify(node, "app", Secret("Plain-Leak-Check-4"))
    await engine.restore(node, snap)
    log_text = postgres_server.log_text()
    assert "ALTER ROLE" in log_text  # statement logging is on and saw the changes
    for password in [*used, "Plain-Leak-Check-3", "Plain-Leak-Check-4"]:
        assert password not in log_text


# --------------------------------------------------------------------------- failures


async def test_node_down_is_unavailable(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    await create_role(postgres_server, "app", "app-pw-1")
    node = node_of(postgres_server)
    await engine.probe(node)  # pooled connection now open
    postgres_server.stop()
    with pytest.raises(EngineUnavailable):
        await engine.probe(node)
    with pytest.raises(EngineUnavailable):
        await engine.set_password(node, "app", Secret("App-new-1"))
    with pytest.raises(EngineUnavailable):
        await engine.verify(node, "app", Secret("app-pw-1"))
    postgres_server.start()
    await engine.probe(node)  # reconnects after the outage
    await engine.set_password(node, "app", Secret("App-new-1"))
    await engine.verify(node, "app", Secret("App-new-1"))


async def test_wrong_admin_password_is_unavailable(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    node = node_of(postgres_server, password="not-the-admin-pw")
    with pytest.raises(EngineUnavailable, match="admin login") as caught:
        await engine.probe(node)
    assert "not-the-admin-pw" not in str(caught.value)


async def test_admin_resets_its_own_role(
    engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    old = postgres_server.password
    node = replace(node_of(postgres_server), pending_password=Secret("Admin-new-pw-1"))
    await engine.probe(node)
    await engine.set_password(node, "postgres", Secret("Admin-new-pw-1"))
    await engine.verify(node, "postgres", Secret("Admin-new-pw-1"))
    await engine.forget(node)  # the next admin login must fall back to the pending password
    info = await engine.probe(node)
    assert info.version.startswith("15.")
    assert not await logs_in(postgres_server, "postgres", old)

    # Without the pending password the old credential no longer logs in ...
    stale = node_of(postgres_server, password=old)
    with pytest.raises(EngineUnavailable, match="admin login"):
        await engine.probe(stale)
    # ... and once promoted, the new one is used directly.
    promoted = node_of(postgres_server, password="Admin-new-pw-1")
    await engine.snapshot(promoted, "postgres")
    assert "Admin-new-pw-1" not in postgres_server.log_text()

"""What only ``PostgresEngine`` does, against real, throwaway PostgreSQL 15 servers (the contract
every engine keeps is ``test_engine_contract``).

Roles that cannot log in (NOLOGIN, VALID UNTIL in the past) are refused; a CREATEROLE admin may
not touch a superuser and cannot read ``pg_authid`` (no rollback); keyturn computes SCRAM-SHA-256
verifiers itself (libpq's, with SASLprep where it applies) and checks a change by logging in
with the new verifier's keys; a role without a password gets none back on restore; and the
server log (``log_statement=all``) never holds a plaintext password.
"""

from __future__ import annotations

import base64
from typing import NoReturn

import psycopg
import pytest

from keyturn.core.errors import (
    AccountCannotLogin,
    AccountPermissionDenied,
    EngineRejected,
    VerificationFailed,
)
from keyturn.core.model import NodeRole, Product
from keyturn.core.secrets import Secret
from keyturn.engines import postgres as postgres_module
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.postgres_admin import PostgresAdmin
from keyturn.engines.postgres_scram import verifier_of
from tests.support.logins import can_login_postgres
from tests.support.plans import instance_of
from tests.support.postgres_server import PostgresServer
from tests.support.sql_admin import create_role, postgres_node, postgres_sql, stored_verifier

pytestmark = pytest.mark.engine


def logs_in(server: PostgresServer, user: str, password: str) -> bool:
    return can_login_postgres(server.port, user, password)


async def test_probe_tells_superuser_roles(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "root2", "root-pw-1", "LOGIN SUPERUSER")
    assert (await postgres_engine.probe(postgres_node(postgres_server), "root2")).superuser is True


async def test_list_accounts(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "app", "app-pw-1")
    create_role(postgres_server, "nologin", None, "NOLOGIN")
    create_role(postgres_server, "expired", "exp-pw-1", "LOGIN VALID UNTIL '2001-01-01'")
    create_role(postgres_server, "forever", "f-pw-1", "LOGIN VALID UNTIL 'infinity'")
    accounts = {
        a.name: a for a in await postgres_engine.list_accounts(postgres_node(postgres_server))
    }
    assert set(accounts) == {"postgres", "app", "expired", "forever"}
    assert accounts["app"].enabled and accounts["forever"].enabled
    assert not accounts["expired"].enabled
    assert all(not a.password_free and a.privilege == "rw" for a in accounts.values())


# --------------------------------------------------------------------------- target checks


@pytest.mark.parametrize(
    "extra", ["NOLOGIN", "LOGIN VALID UNTIL '2001-01-01 00:00:00+00'"], ids=["nologin", "expired"]
)
async def test_role_that_cannot_log_in(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer, extra: str
) -> None:
    create_role(postgres_server, "stuck", "stuck-pw-1", extra)
    node = postgres_node(postgres_server)
    with pytest.raises(AccountCannotLogin) as caught:
        await postgres_engine.snapshot(node, "stuck")
    assert caught.value.code == "AccountCannotLogin"
    with pytest.raises(AccountCannotLogin):
        await postgres_engine.set_password(node, "stuck", Secret("New-stuck-pw-2"))
    assert stored_verifier(postgres_server, "stuck") is not None
    if extra == "NOLOGIN":
        return
    assert not logs_in(postgres_server, "stuck", "stuck-pw-1")


async def test_superuser_target_with_createrole_admin(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "manager", "manager-pw-1", "LOGIN CREATEROLE")
    create_role(postgres_server, "root2", "root2-pw-1", "LOGIN SUPERUSER")
    create_role(postgres_server, "app", "app-pw-1")
    node = postgres_node(postgres_server, "manager", "manager-pw-1")
    with pytest.raises(AccountPermissionDenied) as caught:
        await postgres_engine.snapshot(node, "root2")
    assert caught.value.code == "AccountPermissionDenied"
    assert isinstance(caught.value, EngineRejected)
    with pytest.raises(AccountPermissionDenied):
        await postgres_engine.set_password(node, "root2", Secret("Root2-new-pw"))
    assert logs_in(postgres_server, "root2", "root2-pw-1")

    # An ordinary role can be reset, but pg_authid is unreadable: no rollback possible.
    snap = await postgres_engine.snapshot(node, "app")
    assert snap.data["verifier"] is None
    assert snap.data["verifier_readable"] is False
    assert snap.data["superuser"] is False
    await postgres_engine.set_password(node, "app", Secret("App-new-pw-2"))
    await postgres_engine.verify(node, "app", Secret("App-new-pw-2"))
    with pytest.raises(EngineRejected, match="cannot restore"):
        await postgres_engine.restore(node, snap)


# --------------------------------------------------------------------------- verifiers


async def test_the_snapshot_is_the_stored_verifier(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "app", "old-app-pw")
    node = postgres_node(postgres_server)
    before = stored_verifier(postgres_server, "app")
    snap = await postgres_engine.snapshot(node, "app")
    assert snap.data == {
        "verifier": before,
        "verifier_readable": True,
        "superuser": False,
        # What an overlap's rollback puts back: both roles' VALID UNTIL (keyturn.engines.
        # postgres_overlap); no twin exists here.
        "valid_until": None,
        "partner": "app_clone",
        "partner_exists": False,
        "partner_valid_until": None,
    }
    await postgres_engine.set_password(node, "app", Secret("New-app-pw-1"))
    verifier = stored_verifier(postgres_server, "app")
    assert verifier is not None and verifier.startswith("SCRAM-SHA-256$4096:")
    await postgres_engine.restore(node, snap)
    assert stored_verifier(postgres_server, "app") == before


async def test_non_ascii_password_is_saslprepped(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "app", "old-app-pw")
    password = "pässwörd ☃ ﬁ"  # U+FB01 is mapped by SASLprep (NFKC)
    await postgres_engine.set_password(postgres_node(postgres_server), "app", Secret(password))
    await postgres_engine.verify(postgres_node(postgres_server), "app", Secret(password))
    assert logs_in(postgres_server, "app", password)


async def test_restore_of_a_null_password(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    create_role(postgres_server, "nopw")
    node = postgres_node(postgres_server)
    snap = await postgres_engine.snapshot(node, "nopw")
    assert snap.data["verifier"] is None and snap.data["verifier_readable"] is True
    await postgres_engine.set_password(node, "nopw", Secret("Nopw-new-1"))
    assert stored_verifier(postgres_server, "nopw") is not None
    await postgres_engine.restore(node, snap)
    assert stored_verifier(postgres_server, "nopw") is None


async def test_keyturn_verifiers_are_libpqs(postgres_server: PostgresServer) -> None:
    """An ASCII password's verifier is made with ``hashlib`` (off the event loop): the very
    verifier libpq makes with the same salt and iterations."""
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        for password in ("New-app-pw-1", "x", " spaced\tand ~ punctuated!"):
            libpq = conn.pgconn.encrypt_password(
                password.encode(), b"app", b"scram-sha-256"
            ).decode()
            counted, salt = libpq.split("$")[1].split(":")
            ours = verifier_of(password.encode(), base64.b64decode(salt), int(counted))
            assert ours.text == libpq
            assert ours.keys is not None


async def test_verification_logs_in_with_the_new_verifiers_keys(
    postgres_engine: PostgresEngine, postgres_server: PostgresServer
) -> None:
    """The check after a change logs in with the SCRAM keys of the verifier just written; if
    the role's verifier changed since (another salt: those keys are refused), the password's
    own login decides; a wrong password still fails."""
    create_role(postgres_server, "app", "old-app-pw")
    node = postgres_node(postgres_server)
    await postgres_engine.set_password(node, "app", Secret("New-app-pw-1"))
    await postgres_engine.verify(node, "app", Secret("New-app-pw-1"))
    # The same password, written by someone else with another salt: the keys no longer match.
    postgres_sql(postgres_server, "DROP ROLE app")
    create_role(postgres_server, "app", "New-app-pw-1")
    await postgres_engine.verify(node, "app", Secret("New-app-pw-1"))
    with pytest.raises(VerificationFailed):
        await postgres_engine.verify(node, "app", Secret("Other-app-pw-2"))


async def test_a_change_writes_the_verifier_prepared_for_it(
    postgres_engine: PostgresEngine,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``prepare`` starts the verifier before the change; the change writes that one and
    computes none itself, and the password logs in. A prepared verifier of another password
    is never written: the change makes its own."""
    create_role(postgres_server, "app", "old-app-pw")
    node = postgres_node(postgres_server)

    async def computed(*_: object) -> NoReturn:
        raise AssertionError("the prepared verifier was not used")

    postgres_engine.prepare(node, "app", Secret("New-app-pw-1"))
    with monkeypatch.context() as patched:
        patched.setattr(postgres_module, "scram_verifier", computed)
        await postgres_engine.set_password(node, "app", Secret("New-app-pw-1"))
    written = stored_verifier(postgres_server, "app")
    assert written is not None
    counted, salt = written.split("$")[1].split(":")
    assert verifier_of(b"New-app-pw-1", base64.b64decode(salt), int(counted)).text == written
    await postgres_engine.verify(node, "app", Secret("New-app-pw-1"))
    postgres_engine.prepare(node, "app", Secret("Other-app-pw-2"))
    await postgres_engine.set_password(node, "app", Secret("New-app-pw-3"))
    assert logs_in(postgres_server, "app", "New-app-pw-3")
    assert not logs_in(postgres_server, "app", "Other-app-pw-2")
    await postgres_engine.verify(node, "app", Secret("New-app-pw-3"))


async def test_a_probe_tells_the_discover_that_follows_which_node_is_the_primary(
    postgres_engine: PostgresEngine,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reset's health probe reads whether the node is in recovery in its own round trip; the
    task's ``discover`` right after uses that instead of asking again, once: the next
    ``discover`` asks the node."""
    instance = instance_of([postgres_server.url()], product=Product.TENCENT_POSTGRES)
    [node] = instance.nodes
    asked: list[str] = []
    asks = PostgresEngine._in_recovery

    async def counted(engine: PostgresEngine, admin: PostgresAdmin) -> bool:
        asked.append(node.endpoint)
        return await asks(engine, admin)

    monkeypatch.setattr(PostgresEngine, "_in_recovery", counted)
    await postgres_engine.probe(node, "postgres")
    [found] = (await postgres_engine.discover(instance)).nodes
    assert found.role is NodeRole.PRIMARY and asked == []
    [found] = (await postgres_engine.discover(instance)).nodes
    assert found.role is NodeRole.PRIMARY and asked == [node.endpoint]

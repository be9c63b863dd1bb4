"""The ``Engine`` contract every adapter keeps, checked on real throwaway servers of each kind.

One suite, parametrized over Redis, PostgreSQL and MariaDB (``engine_case``: a started server,
a data account with a known password, keyturn's admin node and the engine). Every claim is
checked from outside the engine too, with a fresh login of its own (``tests.support.logins``):
a new password logs in and the old one is refused, a snapshot brings the old one back, a name
that does not exist (an injection-shaped one included) is never created, a node that is down
or refuses keyturn's login is unavailable without naming a password, keyturn can reset the
account it logs in with (the pending credential), and the plan an engine builds for the
instance changes and undoes the password. What only one engine does (ACL rules, NOLOGIN and
VALID UNTIL, host rows and shadowing...) is in that engine's own module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from keyturn.core.errors import (
    AccountNotFound,
    EngineUnavailable,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, NodeRole, Product
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.mysql_accounts import split_account
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.redis import RedisEngine
from keyturn.engines.registry import EngineRegistry
from tests.support.logins import can_login, can_login_mysql, can_login_postgres
from tests.support.mysql_server import MariaDBServer
from tests.support.plans import instance_of, planned
from tests.support.postgres_server import PostgresServer
from tests.support.redis_admin import add_user, redis_node
from tests.support.redis_server import RedisServer
from tests.support.sql_admin import create_role, create_user, mysql_node, postgres_node

pytestmark = pytest.mark.engine

TIMEOUT = 3.0
OLD, NEW, ADMIN_NEW = "Old-app-pw-1", "New-app-pw-1", "Admin-new-pw-1"
#: Names every engine takes as a plain account name, and a password of the same kind.
ODD_NAMES = ["q\"uo'te", "back\\slash", "ünïcödé-用户", "semi;colon", "pct%_under"]
ODD_PASSWORD = "p w \"q\" 's' ünï >x <y #z %s"


#: The adapters under test (beyond the ``Engine`` port: the per-node changes plans make).
AnyEngine = RedisEngine | PostgresEngine | MySQLEngine


@dataclass(frozen=True)
class Flavour:
    """What one engine's cases share: its server's fixture, its adapter and product, the
    version it reports, keyturn's admin account, names of accounts that do not exist (an
    injection-shaped one among them), and how a test reaches a server of it from outside."""

    fixture: str
    adapter: Callable[..., AnyEngine]
    product: Product
    version: str
    admin_account: str
    missing: tuple[str, ...]
    #: ``node(server, password)``: keyturn's admin node (``None``: the server's password).
    node: Callable[[Any, str | None], Node]
    #: ``logs_in(server, account, password)``: a fresh login from outside keyturn.
    logs_in: Callable[[Any, str, str], bool]
    #: ``add_account(server, name, password)``: a data account made behind keyturn's back;
    #: its name as the engine's API spells it.
    add_account: Callable[[Any, str, str], Awaitable[str]]
    #: ``logs(server)``: the texts where the server records the statements it ran.
    logs: Callable[[Any], list[str]] = lambda server: []


@dataclass
class EngineCase:
    """One engine on one started server, with a data account ``account`` whose password is
    ``OLD``; ``admin`` is keyturn's login, itself the account ``flavour.admin_account``."""

    flavour: Flavour
    server: Any
    engine: AnyEngine
    account: str = ""

    @property
    def admin(self) -> Node:
        return self.node(None)

    @property
    def admin_account(self) -> str:
        return self.flavour.admin_account

    @property
    def kind(self) -> EngineKind:
        return self.flavour.product.engine

    def node(self, password: str | None) -> Node:
        return self.flavour.node(self.server, password)

    def logs_in(self, account: str, password: str) -> bool:
        return self.flavour.logs_in(self.server, account, password)

    async def add_account(self, name: str, password: str) -> str:
        return await self.flavour.add_account(self.server, name, password)


async def add_redis_user(server: RedisServer, name: str, password: str) -> str:
    await add_user(server, name, "on", f">{password}", "~*", "&*", "+@all", "-@dangerous")
    return name


async def add_role(server: PostgresServer, name: str, password: str) -> str:
    create_role(server, name, password)
    return name


async def add_mysql_user(server: MariaDBServer, name: str, password: str) -> str:
    create_user(server, name, "%", password)
    return f"{name}@%"


FLAVOURS = {
    "redis": Flavour(
        "redis_server",
        RedisEngine,
        Product.TENCENT_REDIS,
        "7.",
        "default",
        ("nobody", "x on >pw ~* +@all"),
        lambda server, password: redis_node(server, password=password),
        lambda server, account, password: can_login(server.port, password, account),
        add_redis_user,
    ),
    "postgres": Flavour(
        "postgres_server",
        PostgresEngine,
        Product.TENCENT_POSTGRES,
        "15.",
        "postgres",
        ("no_such_role", 'app" PASSWORD NULL; --'),
        lambda server, password: postgres_node(server, password=password),
        lambda server, account, password: can_login_postgres(server.port, account, password),
        add_role,
        lambda server: [server.log_text()],
    ),
    "mysql": Flavour(
        "mariadb_server",
        MySQLEngine,
        Product.TENCENT_TDMYSQL,
        "10.11.",
        "root@127.0.0.1",
        (
            "nobody@%",
            "app@10.1.1.1",
            "app@localhost",
            "app'@'%' IDENTIFIED BY PASSWORD '' -- @%",
            "app@%' IDENTIFIED VIA mysql_native_password USING '' -- ",
            "app\\'@%",
        ),
        lambda server, password: mysql_node(server, password=password),
        lambda server, account, password: can_login_mysql(
            server.port, split_account(account)[0], password
        ),
        add_mysql_user,
        lambda server: [server.general_log_text(), server.binlog_text()],
    ),
}


async def started(request: pytest.FixtureRequest) -> AsyncIterator[EngineCase]:
    flavour = FLAVOURS[request.param]
    server = request.getfixturevalue(flavour.fixture)
    case = EngineCase(flavour, server, flavour.adapter(timeout=TIMEOUT))
    case.account = await case.add_account("app", OLD)
    yield case
    await case.engine.close()


@pytest.fixture(params=sorted(FLAVOURS))
async def engine_case(request: pytest.FixtureRequest) -> AsyncIterator[EngineCase]:
    async for case in started(request):
        yield case


@pytest.fixture(params=["mysql", "postgres"])
async def sql_case(request: pytest.FixtureRequest) -> AsyncIterator[EngineCase]:
    """The SQL engines only: they keep password verifiers and no password-free accounts."""
    async for case in started(request):
        yield case


# --------------------------------------------------------------------------- reads


async def test_the_registry_serves_the_engine(engine_case: EngineCase) -> None:
    registry = EngineRegistry(TIMEOUT)
    driver = registry.engine(engine_case.kind)
    assert type(driver) is type(engine_case.engine)
    assert driver.kind is engine_case.kind
    await registry.close()


async def test_probe_tells_the_version_and_superusers(engine_case: EngineCase) -> None:
    engine, admin = engine_case.engine, engine_case.admin
    info = await engine.probe(admin, engine_case.admin_account)
    assert info.version.startswith(engine_case.flavour.version)
    assert info.accounts is True
    assert info.superuser is True
    assert (await engine.probe(admin, engine_case.account)).superuser is False
    assert (await engine.probe(admin, engine_case.flavour.missing[0])).superuser is None
    assert (await engine.probe(admin)).superuser is None


async def test_list_accounts_names_the_data_account(engine_case: EngineCase) -> None:
    accounts = {a.name: a for a in await engine_case.engine.list_accounts(engine_case.admin)}
    assert accounts[engine_case.account].enabled
    assert not accounts[engine_case.account].password_free
    assert engine_case.admin_account in accounts


async def test_sql_engines_have_no_password_free_accounts(sql_case: EngineCase) -> None:
    engine, node, account = sql_case.engine, sql_case.admin, sql_case.account
    assert (await engine.probe(node, account)).password_free is None
    with pytest.raises(UnsupportedFeature):
        await engine.set_password_free(node, account)
    with pytest.raises(UnsupportedFeature):
        await engine.verify(node, account, None)


# --------------------------------------------------------------------------- changes


async def test_set_password_then_verify(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    result = await engine.set_password(node, account, Secret(NEW))
    assert result.persisted
    await engine.verify(node, account, Secret(NEW))
    assert engine_case.logs_in(account, NEW)
    assert not engine_case.logs_in(account, OLD)

    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(node, account, Secret(OLD))
    assert node.address.endpoint in caught.value.message
    assert OLD not in str(caught.value)
    assert engine_case.server.password not in str(caught.value)


async def test_password_matches_the_current_password_only(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    assert await engine.password_matches(node, account, Secret(OLD))
    assert not await engine.password_matches(node, account, Secret(NEW))
    await engine.set_password(node, account, Secret(NEW))
    assert await engine.password_matches(node, account, Secret(NEW))
    assert not await engine.password_matches(node, account, Secret(OLD))


async def test_restore_brings_back_the_old_password(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    snapshot = await engine.snapshot(node, account)
    assert snapshot.account == account
    await engine.set_password(node, account, Secret(NEW))
    assert (await engine.restore(node, snapshot)).persisted
    await engine.restore(node, snapshot)  # idempotent
    assert await engine.snapshot(node, account) == snapshot
    assert engine_case.logs_in(account, OLD)
    assert not engine_case.logs_in(account, NEW)


async def test_missing_accounts_are_never_created(engine_case: EngineCase) -> None:
    engine, node = engine_case.engine, engine_case.admin
    before = {a.name for a in await engine.list_accounts(node)}
    template = await engine.snapshot(node, engine_case.account)
    for name in engine_case.flavour.missing:
        with pytest.raises(AccountNotFound):
            await engine.snapshot(node, name)
        with pytest.raises(AccountNotFound):
            await engine.set_password(node, name, Secret(NEW))
        with pytest.raises(AccountNotFound):
            await engine.restore(node, replace(template, account=name))
    assert {a.name for a in await engine.list_accounts(node)} == before
    assert engine_case.logs_in(engine_case.account, OLD)


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_and_passwords_are_only_values(engine_case: EngineCase, name: str) -> None:
    engine, node = engine_case.engine, engine_case.admin
    account = await engine_case.add_account(name, OLD)
    sibling = await engine_case.add_account(name + "_other", OLD)
    snapshot = await engine.snapshot(node, account)
    await engine.set_password(node, account, Secret(ODD_PASSWORD))
    await engine.verify(node, account, Secret(ODD_PASSWORD))
    assert engine_case.logs_in(account, ODD_PASSWORD)
    assert not engine_case.logs_in(account, OLD)
    assert engine_case.logs_in(sibling, OLD)
    await engine.restore(node, snapshot)
    assert engine_case.logs_in(account, OLD)
    assert account in {a.name for a in await engine.list_accounts(node)}


async def test_sql_logs_never_hold_a_plaintext_password(sql_case: EngineCase) -> None:
    engine, node, account = sql_case.engine, sql_case.admin, sql_case.account
    used = ["Plain-Leak-Check-1", "Plain-Leak-Check-2"]
    snapshot = await engine.snapshot(node, account)
    for password in used:
        await engine.set_password(node, account, Secret(password))
        await engine.verify(node, account, Secret(password))
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, sql_case.flavour.missing[0], Secret("Plain-Leak-Check-3"))
    with pytest.raises(VerificationFailed):
        await engine.verify(node, account, Secret("Plain-Leak-Check-4"))
    await engine.restore(node, snapshot)
    logs = sql_case.flavour.logs(sql_case.server)
    assert logs
    for text in logs:
        assert "ALTER " in text  # the log is on and saw the changes
        for password in [*used, "Plain-Leak-Check-3", "Plain-Leak-Check-4", OLD]:
            assert password not in text
        assert sql_case.server.password not in text


# --------------------------------------------------------------------------- keyturn's own login


async def test_a_node_that_is_down_is_unavailable(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    await engine.probe(node)  # a pooled session is open when the server goes away
    engine_case.server.stop()
    for call in (
        engine.probe(node),
        engine.set_password(node, account, Secret(NEW)),
        engine.verify(node, account, Secret(OLD)),
    ):
        with pytest.raises(EngineUnavailable) as caught:
            await call
        assert node.address.endpoint in caught.value.message
    engine_case.server.start()
    assert (await engine.probe(node)).accounts  # reconnects after the outage


async def test_a_wrong_admin_password_is_unavailable(engine_case: EngineCase) -> None:
    node = engine_case.node("Not-The-Admin-Pw")
    with pytest.raises(EngineUnavailable, match="admin login") as caught:
        await engine_case.engine.probe(node)
    assert "Not-The-Admin-Pw" not in repr(caught.value)
    assert caught.value.__suppress_context__  # the driver's exception is not chained


async def test_keyturn_resets_its_own_account_with_the_pending_password(
    engine_case: EngineCase,
) -> None:
    engine, admin = engine_case.engine, engine_case.admin_account
    old = engine_case.server.password
    node = replace(engine_case.admin, pending_password=Secret(ADMIN_NEW))
    await engine.probe(node)
    await engine.set_password(node, admin, Secret(ADMIN_NEW))
    await engine.verify(node, admin, Secret(ADMIN_NEW))
    await engine.probe(node)  # the pooled session survives its own reset
    await engine.forget(node)  # the next admin login must fall back to the pending password
    assert (await engine.probe(node)).version.startswith(engine_case.flavour.version)
    assert not engine_case.logs_in(admin, old)
    engine_case.server.password = ADMIN_NEW  # for the fixtures that stop the server

    # Without the pending password the old credential no longer logs in ...
    with pytest.raises(EngineUnavailable, match="admin login"):
        await engine.probe(engine_case.node(old))
    # ... and once promoted, the new one is used directly.
    await engine.snapshot(engine_case.node(ADMIN_NEW), admin)


# --------------------------------------------------------------------------- plans


async def test_the_plan_changes_and_undoes_the_password(engine_case: EngineCase) -> None:
    engine, account = engine_case.engine, engine_case.account
    admin = engine_case.admin
    instance = instance_of([engine_case.server.url()], product=engine_case.flavour.product)
    topology = await engine.discover(instance)
    assert [n.role for n in topology.nodes] == [NodeRole.PRIMARY]
    run = await planned(engine, instance, account, NEW)
    assert {s.endpoint for s in run.plan.steps} == {admin.address.endpoint}
    await run.apply()
    await run.check()
    assert engine_case.logs_in(account, NEW) and not engine_case.logs_in(account, OLD)
    await run.undo()
    assert engine_case.logs_in(account, OLD) and not engine_case.logs_in(account, NEW)

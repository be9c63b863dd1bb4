"""The engine contract suite's cases: one started server of each kind (Redis, PostgreSQL,
MariaDB) with a data account ``app`` whose password is ``OLD``, keyturn's admin node and the
adapter (``engine_case``; the SQL engines only: ``sql_case``), and how a test reaches each
server from outside keyturn (``Flavour``). Shared by every contract module that runs one
contract against every engine (import the fixtures into the test module).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from keyturn.core.model import EngineKind, Node, Product
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.mysql_accounts import split_account
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.redis import RedisEngine
from tests.support.logins import can_login, can_login_mysql, can_login_postgres
from tests.support.mysql_server import MariaDBServer
from tests.support.postgres_server import PostgresServer
from tests.support.redis_admin import add_user, redis_node
from tests.support.redis_server import RedisServer
from tests.support.sql_admin import create_role, create_user, mysql_node, postgres_node

TIMEOUT = 3.0
OLD, NEW, ADMIN_NEW = "Old-app-pw-1", "New-app-pw-1", "Admin-new-pw-1"


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

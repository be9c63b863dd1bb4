"""The MySQL/MariaDB admin connection: logging in, and reading the account rows a change checks.

One autocommit admin connection is kept per node (``keyturn.engines.admin_pool``); at login it
reads the server's version, whether it is MariaDB and whether the ``mysql_native_password``
plugin is active (always on MariaDB), which every later statement depends on. TLS is used only
when the node URL asks for it (``keyturn.engines.mysql_tls``). Account rows are read from
``mysql.global_priv`` (MariaDB, as JSON) or ``mysql.user`` (MySQL); before a change the target
row is checked: it must exist (``AccountNotFound``), must not be locked (``ACCOUNT LOCK``
survives a password change: ``AccountLocked``, reported rather than silently reset) and must
not be shadowed by a more specific row of the same user, or of the anonymous user, that takes
the same clients' logins (``AccountShadowed``, naming the shadowing host). No SQL text,
password or driver message is logged or copied into an error. Imports: ``keyturn.core``,
``keyturn.engines`` and aiomysql/PyMySQL.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Final

import aiomysql  # type: ignore[import-untyped]

from keyturn.core.errors import AccountLocked, AccountNotFound, AccountShadowed
from keyturn.core.model import Node, NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.mysql_accounts import (
    NATIVE_PLUGIN,
    Row,
    mariadb_row,
    mysql_row,
    shadowing_host,
    split_account,
    text,
    wire_password,
)
from keyturn.engines.sql_engine import SqlAdmin

log = logging.getLogger(__name__)
_PROGRAM_NAME: Final = "keyturn"
_CHARSET: Final = "utf8mb4"

_MARIADB_ROWS: Final = "SELECT User, Host, priv FROM mysql.global_priv WHERE User IN (%s, '')"
_MARIADB_ALL: Final = "SELECT User, Host, priv FROM mysql.global_priv"
_MYSQL_ROWS: Final = (
    "SELECT User, Host, plugin, authentication_string, account_locked"
    " FROM mysql.user WHERE User IN (%s, '')"
)
_MYSQL_ALL: Final = (
    "SELECT User, Host, plugin, authentication_string, account_locked FROM mysql.user"
)
#: Whether an account row holds a global privilege that controls the server: SUPER (granted by
#: ALL PRIVILEGES ON *.* too), or CREATE USER, which may ALTER USER any account, root's
#: included. ``mysql.user`` is a view over ``global_priv`` on MariaDB: one query for both.
SUPERUSER: Final = (
    "SELECT MAX(Super_priv = 'Y' OR Create_user_priv = 'Y') FROM mysql.user"
    " WHERE User = %s AND LOWER(Host) = LOWER(%s)"
)
_MYSQL_NATIVE_ACTIVE: Final = (
    "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = %s"
)


@dataclass(slots=True)
class MySQLAdmin(SqlAdmin):
    """A pooled admin connection, its server's flavour and whether it can take native
    password hashes."""

    mariadb: bool
    native: bool
    #: When the server's run began, once a session mark read it (the connection's run).
    run_started: int | None = None

    async def aclose(self) -> None:
        await close(self.conn)


async def close(conn: Any) -> None:
    try:
        async with asyncio.timeout(1.0):
            await conn.ensure_closed()
    except Exception as exc:  # cleanup must not mask the operation's own outcome
        log.debug("closing a mysql connection failed (%s)", type(exc).__name__)
        conn.close()


async def connect(
    address: NodeAddress,
    user: str,
    password: Secret | None,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> Any:
    """A new autocommit connection logged in as ``user`` over TCP."""
    return await aiomysql.connect(
        host=address.host,
        port=address.port,
        user=user,
        password=wire_password(password),
        db=address.database or None,
        charset=_CHARSET,
        autocommit=True,
        connect_timeout=timeout,
        ssl=ssl_context,
        program_name=_PROGRAM_NAME,
    )


async def login_info(node: Node, conn: Any, password: Secret | None) -> MySQLAdmin:
    """The admin session on ``conn`` (just logged in): the server's flavour and auth plugins
    read; ``conn`` is closed if they cannot be."""
    try:
        row = await one(conn, "SELECT VERSION()")
        version = text(row[0]) if row else ""
        mariadb = "mariadb" in version.lower()
        native = mariadb or await _native_active(conn)
    except BaseException:
        await close(conn)
        raise
    log.debug("admin connection for %s ready (%s)", node.key, version)
    return MySQLAdmin(conn, node.address.username, password, version, mariadb, native)


async def one(
    conn: Any, query: str, params: tuple[Any, ...] | None = None
) -> tuple[Any, ...] | None:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    return None if row is None else tuple(row)


async def _all(conn: Any, query: str, params: tuple[Any, ...] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())


async def _native_active(conn: Any) -> bool:
    row = await one(conn, _MYSQL_NATIVE_ACTIVE, (NATIVE_PLUGIN,))
    return row is not None and text(row[0]).upper() == "ACTIVE"


async def account_rows(admin: MySQLAdmin, user: str | None) -> list[Row]:
    """Account rows of ``user`` and of the anonymous user (None: every row)."""
    if admin.mariadb:
        query, params = (_MARIADB_ALL, None) if user is None else (_MARIADB_ROWS, (user,))
        return [mariadb_row(*r) for r in await _all(admin.conn, query, params)]
    query, params = (_MYSQL_ALL, None) if user is None else (_MYSQL_ROWS, (user,))
    return [mysql_row(*r) for r in await _all(admin.conn, query, params)]


async def target(node: Node, admin: MySQLAdmin, account: str) -> Row:
    """The account's row, checked: it exists, is not locked, chained or shadowed."""
    endpoint = node.address.endpoint
    user, host = split_account(account)
    rows = await account_rows(admin, user)
    found = next(
        (r for r in rows if r.user == user and r.host.lower() == host.lower() and not r.role),
        None,
    )
    if found is None:
        raise AccountNotFound(f"the account does not exist on {endpoint}")
    if found.locked:
        raise AccountLocked(f"the account on {endpoint} is locked (ACCOUNT LOCK)")
    shadow = shadowing_host(found, rows)
    if shadow is not None:
        raise AccountShadowed(
            f"the account on {endpoint} is shadowed by the more specific host {shadow!r}"
        )
    return found

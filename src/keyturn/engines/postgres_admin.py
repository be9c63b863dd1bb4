"""The PostgreSQL admin connection: logging in with libpq's options, and one-row queries.

One autocommit admin connection is kept per node (``keyturn.engines.admin_pool``), used under a
per-node lock; at login it reads the server version and whether the admin is a superuser (only
a superuser reads ``pg_authid``, so only its snapshots can be restored). A connection logs in to
the node URL's database (``postgres`` when it names none) with the URL's TLS and
``target_session_attrs`` options passed on to libpq, names itself ``keyturn`` in
``pg_stat_activity`` and waits at most the engine timeout, rounded up to libpq's whole seconds.
No SQL text, password or driver message is logged or copied into an error. Imports:
``keyturn.core``, ``keyturn.engines`` and psycopg.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from keyturn.core.model import Node, NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.base import close_quietly
from keyturn.engines.postgres_scram import Keys
from keyturn.engines.sql_engine import SqlAdmin

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

#: Database to log in to when the node URL names none.
DEFAULT_DATABASE: Final = "postgres"
#: libpq's lowest useful ``connect_timeout``, in whole seconds.
_MIN_CONNECT_TIMEOUT: Final = 2
_APPLICATION_NAME: Final = "keyturn"
#: Connection parameters a node URL's query may carry, passed on to libpq.
_PASSED_OPTIONS: Final = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs"}
)

_LOGIN_INFO: Final = sql.SQL(
    "SELECT current_setting('server_version'), r.rolsuper"
    " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
)


@dataclass(slots=True)
class PostgresAdmin(SqlAdmin):
    """A pooled admin connection, and whether its role is a superuser."""

    conn: Connection  # the base's field, typed for psycopg
    superuser: bool

    async def aclose(self) -> None:
        await close(self.conn)


async def close(conn: Connection) -> None:
    await close_quietly(conn.close(), "a postgres connection")


async def connect(
    address: NodeAddress,
    user: str,
    password: Secret | None,
    *,
    timeout: float,
    keys: Keys | None = None,
) -> Connection:
    """A new autocommit connection logged in as ``user``: with ``password``, or with a
    verifier's SCRAM ``keys`` (then only by SCRAM: no server may settle for less)."""
    params: dict[str, Any] = {
        key: value for key, value in address.options.items() if key in _PASSED_OPTIONS
    }
    if password is not None:
        params["password"] = password.reveal()
    if keys is not None:
        params["scram_client_key"] = keys.client
        params["scram_server_key"] = keys.server
        params["require_auth"] = "scram-sha-256"
    return await psycopg.AsyncConnection.connect(
        host=address.host,
        port=address.port,
        user=user,
        dbname=address.database or DEFAULT_DATABASE,
        connect_timeout=max(_MIN_CONNECT_TIMEOUT, math.ceil(timeout)),
        application_name=_APPLICATION_NAME,
        autocommit=True,
        **params,
    )


async def login_info(node: Node, conn: Connection, password: Secret | None) -> PostgresAdmin:
    """The admin session on ``conn`` (just logged in), with what later checks need; ``conn``
    is closed if that cannot be read."""
    try:
        row = await one(conn, _LOGIN_INFO)
    except BaseException:
        await close(conn)
        raise
    version, superuser = (str(row[0]), bool(row[1])) if row else ("", False)
    log.debug("admin connection for %s ready (PostgreSQL %s)", node.key, version)
    return PostgresAdmin(conn, node.address.username, password, version, superuser)


async def one(
    conn: Connection, query: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
) -> tuple[Any, ...] | None:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return await cur.fetchone()

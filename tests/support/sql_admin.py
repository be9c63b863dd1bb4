"""Raw administration of a throwaway PostgreSQL or MariaDB, outside keyturn: the admin node
keyturn is given, and the statements a test sets up or checks with (as the superuser or root).

Passwords only ever reach the servers as verifiers or hashes (a SCRAM verifier computed by
libpq, MariaDB's ``mysql_native_password`` hash), so a test's own setup never puts a
plaintext password into a server log that the test then searches.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
from psycopg import sql

from keyturn.core.model import EngineKind, Node, parse_node_url
from tests.support.mysql_server import MariaDBServer, native_hash
from tests.support.postgres_server import PostgresServer

# --------------------------------------------------------------------------- PostgreSQL


def postgres_node(
    server: PostgresServer, user: str = "postgres", password: str | None = None
) -> Node:
    """The node keyturn administers ``server`` through (the superuser unless told otherwise)."""
    address = parse_node_url(server.url(user, password), EngineKind.POSTGRES)
    return Node(instance_id="postgres-test0001", ordinal=0, address=address)


def postgres_sql(server: PostgresServer, statement: sql.Composed | sql.SQL | str) -> list[Any]:
    """Run one statement as the superuser; its rows (none for a command)."""
    query = sql.SQL(statement) if isinstance(statement, str) else statement
    with psycopg.connect(server.url(), autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def create_role(
    server: PostgresServer, name: str, password: str | None = None, *options: str
) -> None:
    """``CREATE ROLE name <options> [PASSWORD <SCRAM verifier>]`` (options default to LOGIN)."""
    parts: list[sql.Composable] = [sql.SQL("CREATE ROLE {} ").format(sql.Identifier(name))]
    parts.append(sql.SQL(" ").join(sql.SQL(o) for o in (options or ("LOGIN",))))
    if password is not None:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), name.encode(), b"scram-sha-256"
            ).decode()
        parts.append(sql.SQL(" PASSWORD {}").format(sql.Literal(verifier)))
    postgres_sql(server, sql.Composed(parts))


def stored_verifier(server: PostgresServer, role: str) -> str | None:
    """``pg_authid.rolpassword`` of ``role`` (which must exist)."""
    query = sql.SQL("SELECT rolpassword FROM pg_authid WHERE rolname = {}").format(
        sql.Literal(role)
    )
    [(verifier,)] = postgres_sql(server, query)
    return None if verifier is None else str(verifier)


# --------------------------------------------------------------------------- MariaDB


def mysql_node(server: MariaDBServer, user: str = "root", password: str | None = None) -> Node:
    """The node keyturn administers ``server`` through (root unless told otherwise)."""
    address = parse_node_url(server.url(user, password), EngineKind.MYSQL)
    return Node(instance_id="cdb-test0001", ordinal=0, address=address)


def mysql_sql(server: MariaDBServer, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement as root (``%s`` parameters, ``%%`` for a literal ``%``); its rows."""
    conn = pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user="root",
        password=server.password.encode(),
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
        ssl_disabled=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, args)
            return list(cursor.fetchall())
    finally:
        conn.close()


def create_user(server: MariaDBServer, user: str, host: str, password: str) -> None:
    mysql_sql(
        server, "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, native_hash(password))
    )


def stored_hash(server: MariaDBServer, user: str, host: str) -> str:
    """``mysql.user.authentication_string`` of ``user@host`` (which must exist)."""
    [(found,)] = mysql_sql(
        server,
        "SELECT authentication_string FROM mysql.user WHERE User = %s AND Host = %s",
        (user, host),
    )
    return str(found)

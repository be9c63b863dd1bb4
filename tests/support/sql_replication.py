"""Replicated SQL instances for wire tests: a keyturn with a short engine timeout, register a
PostgreSQL primary + standby or a MariaDB primary + replica with it, make roles and users on
the primary (replayed by the others), log in to one node or check which password logs in on
every node, and reset (and list the tasks) through the official Tencent SDKs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from tencentcloud.postgres.v20170312 import models as pg_models

from keyturn.core.model import Product
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login_mysql, can_login_postgres
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string
from tests.support.postgres_server import PostgresServer
from tests.support.sdk import postgres_sdk


def start_keyturn(
    root: Path, engine_timeout: float, env: dict[str, str] | None = None
) -> Iterator[KeyturnServer]:
    """A started keyturn whose engine operations time out after ``engine_timeout`` seconds (so
    the bounded waits on a standby or replica stay short), stopped after the yield."""
    extra = {"KEYTURN_ENGINE_TIMEOUT": str(engine_timeout), **(env or {})}
    server = KeyturnServer(root, extra_env=extra)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def endpoint(server: PostgresServer | MariaDBServer) -> str:
    return f"127.0.0.1:{server.port}"


Server = TypeVar("Server", PostgresServer, MariaDBServer)


def running(servers: Sequence[Server]) -> list[Server]:
    """The ones of ``servers`` that run (a test may have stopped one)."""
    return [server for server in servers if server.running]


def register_pg(keyturn: KeyturnServer, pair: list[PostgresServer]) -> str:
    instance_id = "postgres-" + secrets.token_hex(4)
    keyturn.add_instance(
        instance_id, [server.url() for server in pair], product=Product.TENCENT_POSTGRES
    )
    return instance_id


def create_role(pair: list[PostgresServer], name: str, password: str) -> None:
    """A login role made on the primary (with a verifier), replayed by the standby."""
    with psycopg.connect(pair[0].url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)
            )
        )
    pair[1].wait_replayed()


def pg_logs_in(server: PostgresServer, user: str, password: str) -> bool:
    return can_login_postgres(server.port, user, password)


def pg_only(servers: Sequence[PostgresServer], user: str, good: str, bad: str) -> None:
    """``good`` logs in as ``user`` on every one of ``servers``, ``bad`` on none."""
    for server in servers:
        assert pg_logs_in(server, user, good)
        assert not pg_logs_in(server, user, bad)


def pg_tasks(keyturn: KeyturnServer, instance_id: str) -> list[Any]:
    """The instance's tasks (``DescribeTasks``), newest first."""
    request = pg_models.DescribeTasksRequest()
    request.DBInstanceId = instance_id
    return list(postgres_sdk(keyturn.endpoint).DescribeTasks(request).TaskSet or [])


def pg_reset(keyturn: KeyturnServer, instance_id: str, user: str, password: str) -> None:
    request = pg_models.ResetAccountPasswordRequest()
    request.DBInstanceId, request.UserName, request.Password = instance_id, user, password
    postgres_sdk(keyturn.endpoint).ResetAccountPassword(request)


def register_tdsql(keyturn: KeyturnServer, pair: list[MariaDBServer]) -> str:
    instance_id = "tdsql3-" + secrets.token_hex(4)
    keyturn.add_instance(
        instance_id, [server.url() for server in pair], product=Product.TENCENT_TDMYSQL
    )
    return instance_id


def create_user(pair: list[MariaDBServer], user: str, host: str, password: str) -> None:
    pair[0].socket_sql(
        f"CREATE USER {sql_string(user)}@{sql_string(host)} IDENTIFIED BY PASSWORD "
        f"{sql_string(native_hash(password))};"
    )
    pair[1].wait_replicated()


def my_logs_in(server: MariaDBServer, user: str, password: str) -> bool:
    return can_login_mysql(server.port, user, password)


def my_only(servers: Sequence[MariaDBServer], user: str, good: str, bad: str) -> None:
    """``good`` logs in as ``user`` on every one of ``servers``, ``bad`` on none."""
    for server in servers:
        assert my_logs_in(server, user, good)
        assert not my_logs_in(server, user, bad)

"""Throwaway engines registered as keyturn instances for the secret-manager tests: how to log
in to each (a fresh login, or a held session that keeps querying), and the passwords read
from a secret recorded for the session's secret scan."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest

from keyturn.core.model import Product
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import (
    LOGIN_TIMEOUT,
    can_login,
    can_login_mysql,
    can_login_postgres,
    redis_login,
)
from tests.support.passwords import USED_PASSWORDS, new_password
from tests.support.sql_admin import create_role, create_user


class Session:
    """A held login: ``query`` runs one trivial statement on it."""

    def __init__(self, query: Callable[[], object], close: Callable[[], object]) -> None:
        self.query = query
        self.close = close


@dataclass(frozen=True)
class Engine:
    """A registered instance on a throwaway server, and how to log in to it."""

    kind: str
    instance_id: str
    login: Callable[[str, str], bool]
    #: A held session as (user, password); raises if the login is refused.
    session: Callable[[str, str], Session]
    #: Makes the account on a SQL engine beforehand (with a throwaway password): keyturn's
    #: secret manager creates a missing Redis ACL user itself, not yet a SQL role or user.
    prepare: Callable[[str], None] = lambda account: None


def _redis(keyturn: KeyturnServer, request: pytest.FixtureRequest, product: Product) -> Engine:
    server = request.getfixturevalue("redis_server")
    prefix = "r-" if product is Product.ALIBABA_KVSTORE else "crs-"
    instance_id = prefix + secrets.token_hex(5)
    region = "cn-hangzhou" if product is Product.ALIBABA_KVSTORE else "ap-guangzhou"
    keyturn.add_instance(instance_id, [server.admin_url()], product=product, region=region)

    def session(user: str, password: str) -> Session:
        client = redis_login(server.port, password, user)
        if client is None:
            raise PermissionError(f"redis refused {user}")
        return Session(client.ping, client.close)

    return Engine("redis", instance_id, lambda user, pw: can_login(server.port, pw, user), session)


def _postgres(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> Engine:
    server = request.getfixturevalue("postgres_server")
    instance_id = "postgres-" + secrets.token_hex(4)
    keyturn.add_instance(instance_id, [server.url()], product=Product.TENCENT_POSTGRES)

    def session(user: str, password: str) -> Session:
        conn = psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user=user,
            password=password,
            dbname="postgres",
            connect_timeout=LOGIN_TIMEOUT,
            autocommit=True,
        )
        return Session(lambda: conn.execute("SELECT 1").fetchone(), conn.close)

    return Engine(
        "postgres",
        instance_id,
        lambda user, pw: can_login_postgres(server.port, user, pw),
        session,
        lambda account: create_role(server, account, new_password()),
    )


def _mariadb(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> Engine:
    server = request.getfixturevalue("mariadb_server")
    instance_id = "tdsql3-" + secrets.token_hex(4)
    keyturn.add_instance(instance_id, [server.url()], product=Product.TENCENT_TDMYSQL)

    def session(user: str, password: str) -> Session:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=server.port,
            user=user,
            password=password.encode(),
            connect_timeout=LOGIN_TIMEOUT,
            ssl_disabled=True,
        )

        def query() -> Any:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                return cursor.fetchone()

        return Session(query, conn.close)

    return Engine(
        "mysql",
        instance_id,
        lambda user, pw: can_login_mysql(server.port, user, pw),
        session,
        lambda account: create_user(server, account, "%", new_password()),
    )


def engine_for(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str, kms: bool
) -> Engine:
    """``kind`` (redis, postgres, mysql) on a started throwaway server, registered as the
    product a Tencent SSM secret (``kms`` False) or an Alibaba KMS secret names."""
    if kind == "redis":
        return _redis(keyturn, request, Product.ALIBABA_KVSTORE if kms else Product.TENCENT_REDIS)
    return _postgres(keyturn, request) if kind == "postgres" else _mariadb(keyturn, request)


def recorded(password: str) -> str:
    """A password read from a secret, recorded for the session's secret scan."""
    USED_PASSWORDS.append(password)
    return password

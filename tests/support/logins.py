"""One fresh login per engine, from outside keyturn: how a test proves which password an
account has now.

Each opens its own connection as ``user`` on 127.0.0.1 (never a pooled one), tries the
password once and closes it. ``can_login`` is Redis (AUTH and PING; ``redis_login`` keeps the
connection open for the test to use); ``postgres_login`` and
``mysql_login`` answer the first row of a query run on the new session (what a TLS test asks
the server about its own connection, or MariaDB's ``CURRENT_USER()``), None when the login is
refused; ``can_login_postgres`` and ``can_login_mysql`` say only whether it logs in. Extra
keyword options go to the driver's ``connect`` (TLS settings).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Seconds a login may take before the test fails on it.
LOGIN_TIMEOUT = 5


def redis_login(
    port: int, password: str | None, user: str = "default", **options: Any
) -> redis.Redis | None:
    """A fresh Redis connection as ``user``, logged in with ``password`` (None: no AUTH) and
    PINGed; None if Redis refuses the password. No retries: redis-py retries a refused AUTH (a
    ConnectionError) with backoff, which would cost seconds per refused login."""
    try:
        # A single-connection client connects (and logs in) when it is made.
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            username=user if password else None,
            password=password,
            protocol=2,
            driver_info=None,
            single_connection_client=True,
            socket_timeout=3,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
    except (redis.AuthenticationError, redis.ResponseError):
        return None
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError):
        client.close()
        return None
    return client


def can_login(port: int, password: str | None, user: str = "default", **options: Any) -> bool:
    """Whether ``user`` logs in to Redis on ``port`` with ``password`` (see ``redis_login``)."""
    client = redis_login(port, password, user, **options)
    if client is None:
        return False
    client.close()
    return True


def postgres_login(
    port: int, user: str, password: str, query: str = "SELECT 1", **options: Any
) -> tuple[Any, ...] | None:
    """The first row of ``query`` on a fresh PostgreSQL session as ``user``; None if the login
    is refused."""
    try:
        conn = psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password,
            dbname="postgres",
            connect_timeout=LOGIN_TIMEOUT,
            **options,
        )
    except psycopg.OperationalError:
        return None
    with conn:
        return conn.execute(query).fetchone()


def can_login_postgres(port: int, user: str, password: str, **options: Any) -> bool:
    return postgres_login(port, user, password, **options) is not None


def mysql_login(
    port: int, user: str, password: str, query: str = "SELECT 1", **options: Any
) -> tuple[Any, ...] | None:
    """The first row of ``query`` on a fresh MySQL/MariaDB session as ``user`` (the password
    sent as UTF-8); None if the login is refused. Without TLS options the session is plain."""
    try:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            password=password.encode(),
            connect_timeout=LOGIN_TIMEOUT,
            **(options or {"ssl_disabled": True}),
        )
    except pymysql.err.OperationalError:
        return None
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row
    finally:
        conn.close()


def can_login_mysql(port: int, user: str, password: str, **options: Any) -> bool:
    return mysql_login(port, user, password, **options) is not None

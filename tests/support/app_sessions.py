"""Application sessions held open by a test: what "who still uses the old password" must find.

``open_app_session(kind, port, account, password, name)`` logs in as an application would, on
a connection that stays open, named the way each engine lets a client name itself (Redis
``CLIENT SETNAME``, PostgreSQL ``application_name``, MySQL's ``program_name`` connect
attribute), and returns its engine-side id, its client address as the server sees it
(``127.0.0.1:<local port>``), whether it is still open (``alive``: one round trip) and
``close``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pymysql  # type: ignore[import-untyped]
import redis

from keyturn.core.model import EngineKind
from tests.support.logins import LOGIN_TIMEOUT


@dataclass
class AppSession:
    id: str
    addr: str
    alive: Callable[[], bool]
    close: Callable[[], None]


def _alive(ping: Callable[[], object]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            ping()
        except Exception:
            return False
        return True

    return check


def open_app_session(
    kind: EngineKind, port: int, account: str, password: str, name: str
) -> AppSession:
    if kind is EngineKind.REDIS:
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            username=account,
            password=password,
            protocol=2,
            driver_info=None,
            single_connection_client=True,
            socket_timeout=3,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        client.client_setname(name)
        info = client.client_info()
        return AppSession(str(info["id"]), str(info["addr"]), _alive(client.ping), client.close)
    if kind is EngineKind.POSTGRES:
        conn = psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=account,
            password=password,
            dbname="postgres",
            application_name=name,
            connect_timeout=LOGIN_TIMEOUT,
            autocommit=True,
        )
        host, local = conn.execute(
            "SELECT host(inet_client_addr()), inet_client_port()"
        ).fetchone() or ("", 0)
        return AppSession(
            str(conn.info.backend_pid),
            f"{host}:{local}",
            _alive(lambda: conn.execute("SELECT 1")),
            conn.close,
        )
    user, _, _ = account.rpartition("@")
    mysql = pymysql.connect(
        host="127.0.0.1",
        port=port,
        user=user or account,
        password=password.encode(),
        connect_timeout=LOGIN_TIMEOUT,
        program_name=name,
        ssl_disabled=True,
    )
    local = mysql._sock.getsockname()[1]

    def ping() -> None:
        mysql.ping(reconnect=False)

    def close() -> None:
        with contextlib.suppress(Exception):
            mysql.close()

    return AppSession(str(mysql.thread_id()), f"127.0.0.1:{local}", _alive(ping), close)

"""Scenario 6: the PostgreSQL and MariaDB reset rows. Both vendor APIs are synchronous, so the
time to keyturn's verification is the time to its answer; the baseline is the same reset done
by hand in the same run: client-side hash, ALTER, and a fresh login with the new password. The
raw reset and keyturn's take turns, one of each at a time, so that a busy moment of the machine
weighs on both sides of the ratio."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import psycopg
from psycopg import sql
from tests.support.keyturn_server import KEY_ID, KEY_SECRET, TENANT, KeyturnServer
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string
from tests.support.postgres_server import PostgresServer

from bench.client import SignedClient
from bench.scenarios import QUIET, START_TIMEOUT
from bench.stats import Check, Report, summary
from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin


def password() -> str:
    return "Bq-" + secrets.token_hex(8) + "A9!"


async def register(server: KeyturnServer, product: Product, instance_id: str, url: str) -> None:
    store = await open_admin_store(load_settings(data_dir=server.data_dir, env={}))
    try:
        await Admin(store).add_instance(
            tenant_id=TENANT,
            instance_id=instance_id,
            product=product,
            region="ap-guangzhou",
            node_urls=[Secret(url)],
        )
    finally:
        await store.close()


async def timed_calls(client: SignedClient, action: str, make: object, n: int) -> list[float]:
    times = []
    for _ in range(n):
        raw = client.build(action, make())  # type: ignore[operator]
        start = time.perf_counter()
        answer = await client.send(raw)
        times.append(time.perf_counter() - start)
        if b'"Error"' in answer:
            raise RuntimeError(answer.decode()[:300])
    return times


async def alternating(
    raw: Callable[[], Awaitable[list[float]]],
    ours: Callable[[], Awaitable[list[float]]],
    warm: int,
    n: int,
) -> tuple[list[float], list[float]]:
    """``n`` timings of each, taken in turn after ``warm`` untimed rounds."""
    raws: list[float] = []
    api: list[float] = []
    for i in range(warm + n):
        first, second = await raw(), await ours()
        if i >= warm:
            raws += first
            api += second
    return raws, api


async def postgres_raw(
    pg: PostgresServer, role: str, n: int, admin: psycopg.AsyncConnection[Any] | None = None
) -> list[float]:
    """``n`` timed raw resets, on ``admin`` (else on an admin connection of their own)."""
    conn = admin or await psycopg.AsyncConnection.connect(pg.url(), autocommit=True)
    times = []
    for _ in range(n):
        new = password()
        start = time.perf_counter()
        verifier = conn.pgconn.encrypt_password(new.encode(), role.encode(), b"scram-sha-256")
        await conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())
            )
        )
        fresh = await psycopg.AsyncConnection.connect(
            host="127.0.0.1", port=pg.port, user=role, password=new, dbname="postgres"
        )
        await fresh.close()
        times.append(time.perf_counter() - start)
    if admin is None:
        await conn.close()
    return times


async def mariadb_raw(db: MariaDBServer, user: str, n: int, admin: Any = None) -> list[float]:
    """``n`` timed raw resets, on ``admin`` (else on an admin connection of their own)."""
    conn = admin or await aiomysql.connect(
        host="127.0.0.1", port=db.port, user="root", password=db.password, autocommit=True
    )
    times = []
    for _ in range(n):
        new = password()
        start = time.perf_counter()
        digest = "*" + hashlib.sha1(hashlib.sha1(new.encode()).digest()).hexdigest().upper()
        async with conn.cursor() as cur:
            await cur.execute(
                "ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING %s",
                (user, "%", digest),
            )
        fresh = await aiomysql.connect(host="127.0.0.1", port=db.port, user=user, password=new)
        fresh.close()
        times.append(time.perf_counter() - start)
    if admin is None:
        conn.close()
    return times


async def sql_latency(root: Path, report: Report, n: int) -> None:
    pg, db = PostgresServer().start(), MariaDBServer().start()
    server = KeyturnServer(root / "s6", extra_env=QUIET)
    server.start(timeout=START_TIMEOUT)
    try:
        role, user = "bench_role", "bench_user"
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        db.socket_sql(
            f"CREATE USER {sql_string(user)}@'%' IDENTIFIED BY PASSWORD "
            f"{sql_string(native_hash(password()))};"
        )
        await register(server, Product.TENCENT_POSTGRES, "postgres-bench001", pg.url())
        await register(server, Product.TENCENT_TDMYSQL, "tdsql3-bench001", db.url())
        warm = max(5, n // 10)
        pg_client = SignedClient(
            "127.0.0.1", server.port, KEY_ID, KEY_SECRET, "postgres", "2017-03-12"
        )
        my_client = SignedClient(
            "127.0.0.1", server.port, KEY_ID, KEY_SECRET, "tdmysql", "2021-11-22"
        )
        # Each connection opens just before its calls: one left idle through the other
        # engine's run would meet the server's keep-alive read timeout on a busy machine.
        await pg_client.connect()
        pg_admin = await psycopg.AsyncConnection.connect(pg.url(), autocommit=True)
        my_admin = await aiomysql.connect(
            host="127.0.0.1", port=db.port, user="root", password=db.password, autocommit=True
        )
        # The raw reset and keyturn's alternate, one each in turn, so a busy moment of the
        # machine lands on both sides of the ratio alike.
        pg_raw, pg_api = await alternating(
            lambda: postgres_raw(pg, role, 1, pg_admin),
            lambda: timed_calls(
                pg_client,
                "ResetAccountPassword",
                lambda: {
                    "DBInstanceId": "postgres-bench001",
                    "UserName": role,
                    "Password": password(),
                },
                1,
            ),
            warm,
            n,
        )
        await my_client.connect()
        my_raw, my_api = await alternating(
            lambda: mariadb_raw(db, user, 1, my_admin),
            lambda: timed_calls(
                my_client,
                "ResetUserPassword",
                lambda: {
                    "InstanceId": "tdsql3-bench001",
                    "UserName": user,
                    "Host": "%",
                    "Password": password(),
                },
                1,
            ),
            warm,
            n,
        )
        await asyncio.gather(pg_client.close(), my_client.close(), pg_admin.close())
        my_admin.close()
    finally:
        server.stop()
        pg.close()
        db.close()
    rows = {"postgres": (pg_raw, pg_api, 1.3), "mariadb": (my_raw, my_api, 2.0)}
    report.data["sql_latency"] = {}
    for engine, (raw, api, target) in rows.items():
        base, ours = summary(raw), summary(api)
        report.data["sql_latency"][engine] = {"baseline": base, "keyturn": ours}
        report.samples[f"{engine} raw reset+verify"] = raw
        report.samples[f"{engine} keyturn (verified)"] = api
        report.checks.append(
            Check(
                "6 sql reset latency",
                f"{engine}: verified p50 / raw hash+ALTER+login p50",
                ours["p50_ms"] / base["p50_ms"],
                target,
                "<=",
                f"raw p50 {base['p50_ms']:.2f} ms, keyturn p50 {ours['p50_ms']:.2f} ms",
            )
        )

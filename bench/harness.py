"""Throwaway engines and keyturn servers for the benchmarks, and bulk inventory set-up.

Reuses the test suite's process helpers (real redis-server and ``keyturn serve`` processes on
free loopback ports); adds a dedicated ``kadmin`` Redis user so that resetting ``default`` never
invalidates keyturn's pooled admin connection, as an operator would configure it. ``STORES``
says where the keyturn servers keep their store: SQLite in each data dir (the default), or with
``--store postgres`` a fresh database each on one throwaway PostgreSQL 15 (``keyturn_server``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer

from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.model import KeySource, Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin, build_instance
from keyturn.store import rows, schema
from keyturn.store.listing import BUMP_GENERATION
from keyturn.store.sealing import AesGcmSecretBox, load_or_create_master_key

ADMIN_USER = "kadmin"


class Stores:
    """The store backend of the benchmark's keyturn servers."""

    def __init__(self) -> None:
        self.name = "sqlite"
        self._postgres: PostgresServer | None = None
        self._databases = 0

    def use_postgres(self) -> None:
        """From now on each server gets a database of its own on one throwaway PostgreSQL."""
        if self._postgres is None:
            self._postgres = server = PostgresServer().start()
            # Production-like, so the comparison with SQLite (fsync'd commits) is fair: the
            # test server's settings log every statement and skip fsync.
            for setting in ("log_statement = 'none'", "fsync = on", "synchronous_commit = on"):
                server.sql_value(f"ALTER SYSTEM SET {setting}")
            server.sql_value("SELECT pg_reload_conf()::text")
        self.name = "postgres"

    def use_sqlite(self) -> None:
        """From now on each server keeps SQLite in its data dir (PostgreSQL stays up)."""
        self.name = "sqlite"

    def new_database(self) -> str | None:
        """A fresh database's URL, or None for SQLite in the server's data dir."""
        if self._postgres is None or self.name != "postgres":
            return None
        self._databases += 1
        name = f"keyturn_bench_{self._databases}"
        self._postgres.sql_value(f'CREATE DATABASE "{name}"')
        return self._postgres.url(dbname=name)

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None
        self.name = "sqlite"


STORES = Stores()


def keyturn_server(root: Path, **options: Any) -> KeyturnServer:
    """A keyturn server (not started) on the benchmark's store backend."""
    return KeyturnServer(root, database_url=STORES.new_database(), **options)


async def admin_client(server: RedisServer) -> aioredis.Redis:
    return aioredis.Redis(
        host="127.0.0.1",
        port=server.port,
        password=server.password,
        protocol=2,
        driver_info=None,
    )


async def prepare_redis(servers: Sequence[RedisServer]) -> str:
    """Give every server a ``kadmin`` user with one shared password; returns it."""
    password = "Ka-" + secrets.token_hex(12)

    async def one(server: RedisServer) -> None:
        client = await admin_client(server)
        await client.execute_command(
            "ACL", "SETUSER", ADMIN_USER, "on", f">{password}", "~*", "&*", "+@all"
        )
        await client.aclose()

    await asyncio.gather(*(one(s) for s in servers))
    return password


def start_redis(count: int, hz: int | None = None) -> list[RedisServer]:
    # One at a time: a port is only reserved once its server listens.
    return [
        RedisServer(password="Def-" + secrets.token_hex(8), hz=hz).start() for _ in range(count)
    ]


async def register(
    keyturn: KeyturnServer, servers: Sequence[RedisServer], admin_password: str
) -> list[str]:
    """Register one tencent-redis instance per server in one store session."""
    store = await open_admin_store(load_settings(data_dir=keyturn.data_dir, env=keyturn.store_env))
    ids = []
    try:
        admin = Admin(store)
        for server in servers:
            instance_id = "crs-" + secrets.token_hex(4)
            url = f"redis://{ADMIN_USER}:{admin_password}@127.0.0.1:{server.port}"
            await admin.add_instance(
                tenant_id=TENANT,
                instance_id=instance_id,
                product=Product.TENCENT_REDIS,
                region="ap-guangzhou",
                node_urls=[Secret(url)],
            )
            ids.append(instance_id)
    finally:
        await store.close()
    return ids


async def verified_times(keyturn: KeyturnServer, task_ids: Sequence[int]) -> dict[int, datetime]:
    """When keyturn recorded each task's verification (its own clock)."""
    store = await open_admin_store(load_settings(data_dir=keyturn.data_dir, env=keyturn.store_env))
    try:
        out = {}
        for task_id in task_ids:
            task = await store.get_task(TENANT, task_id)
            if task.verified_at is not None:
                out[task_id] = task.verified_at
        return out
    finally:
        await store.close()


def bulk_instances(data_dir: Path, count: int, batch: int = 5000) -> None:
    """Insert ``count`` generated instances (one node each) straight into the SQLite store,
    sealed as keyturn seals them; used for the inventory-scale scenario."""
    key = load_or_create_master_key(data_dir, None)
    box = AesGcmSecretBox(key)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'keyturn.db'}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for start in range(0, count, batch):
            inst_rows, node_rows = [], []
            for n in range(start, min(count, start + batch)):
                instance = build_instance(
                    tenant_id=TENANT,
                    instance_id=f"crs-{n:08d}",
                    product=Product.TENCENT_REDIS,
                    region="ap-guangzhou",
                    node_urls=[Secret(f"redis://kadmin:pw{n}@127.0.0.1:1")],
                    name=f"gen-{n}",
                    password_free_allowed=True,
                    source=KeySource.CLI,
                )
                inst_rows.append(
                    {
                        "id": instance.id,
                        "tenant_id": TENANT,
                        "product": str(instance.product),
                        "region": instance.region,
                        "name": instance.name,
                        "password_free_allowed": True,
                        "no_auth": False,
                        "engine_version": "7.0.15",
                        "source": "cli",
                        "created_at": now,
                    }
                )
                node_rows.append(
                    rows.node_values(
                        instance.nodes[0], lambda text, ctx: box.seal(text, context=ctx)
                    )
                )
            conn.execute(schema.instances.insert(), inst_rows)
            conn.execute(schema.nodes.insert(), node_rows)
        conn.execute(BUMP_GENERATION)
    engine.dispose()


def stop_all(servers: Sequence[RedisServer]) -> None:
    """Stop many servers at once: signal them all, then wait (``--hz 1`` servers take up to a
    second each to act on SIGTERM)."""
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        server.close()

"""A fleet of throwaway engines for fleet-rotation tests and the scale bench: many
redis-servers started concurrently (each ~3 MB), registered in a keyturn server's store in one
go, and the store's view of a fleet job (its tasks by request id) for the checks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin
from keyturn.store.schema import tasks
from keyturn.store.sql import SqlStore
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.redis_server import RedisServer


@contextmanager
def redis_fleet(count: int, *, threads: int = 32) -> Iterator[list[RedisServer]]:
    """``count`` started redis-servers, each with keyturn's admin user; all closed after.

    Started concurrently, two servers could be handed the same free port: the loser exits on
    "Address already in use" only after the winner answered its PING. So ports are distinct
    from the start, and a server found dead after the start is replaced."""
    servers: list[RedisServer] = []
    ports: set[int] = set()
    while len(servers) < count:
        server = RedisServer()
        if server.port in ports:
            server.close()
            continue
        ports.add(server.port)
        servers.append(server)

    def up(server: RedisServer) -> RedisServer:
        server.start()
        time.sleep(0.2)
        if not server.running:
            server.close()
            return up(RedisServer())
        server.admin_url()
        return server

    try:
        with ThreadPoolExecutor(threads) as pool:
            servers = list(pool.map(up, servers))
        if len({s.port for s in servers}) != count:
            raise RuntimeError("two redis-servers share a port")
        yield servers
    finally:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(RedisServer.close, servers))


@dataclass(frozen=True)
class FleetMember:
    instance_id: str
    product: Product
    node_url: str


def register(server: KeyturnServer, members: Sequence[FleetMember], region: str) -> None:
    """Register every member under the test tenant in one store session."""

    async def go(store: SqlStore) -> None:
        admin = Admin(store)
        for m in members:
            await admin.add_instance(
                tenant_id=TENANT,
                instance_id=m.instance_id,
                product=m.product,
                region=region,
                node_urls=[Secret(m.node_url)],
            )

    server.with_store(go)


@dataclass(frozen=True)
class FleetTask:
    id: int
    instance_id: str
    account: str
    state: str
    request_id: str
    created_at: datetime


def job_tasks(server: KeyturnServer, job_id: str) -> list[FleetTask]:
    """Every task a fleet job queued (request ids ``fleet:<job>:<seq>:<attempt>``)."""

    async def go(store: SqlStore) -> list[FleetTask]:
        query = sa.select(
            tasks.c.id,
            tasks.c.instance_id,
            tasks.c.account,
            tasks.c.state,
            tasks.c.request_id,
            tasks.c.created_at,
        ).where(tasks.c.request_id.like(f"fleet:{job_id}:%"))
        async with store.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FleetTask(int(r.id), r.instance_id, r.account, r.state, r.request_id, r.created_at)
            for r in rows
        ]

    return server.with_store(go)

"""Starting on a store: ``keyturn migrate``, several nodes starting at once on one empty
PostgreSQL (one migrates, the others wait for it; ``keyturn.store.startup``), and a node whose
master key does not open the store's secrets."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from keyturn.core.errors import InternalError, StoreUnavailable
from keyturn.core.model import AccessKey, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.store.migrate import SCHEMA_HEAD, current_revision
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.ports import free_port
from tests.support.store_backends import StoreBackend, StorePostgres

BOX = AesGcmSecretBox(b"k" * 32)


def migrate(data_dir: Path, url: str | None) -> subprocess.Popen[str]:
    """``keyturn migrate`` in a process of its own."""
    env = {k: v for k, v in os.environ.items() if k != "KEYTURN_DATABASE_URL"}
    if url is not None:
        env["KEYTURN_DATABASE_URL"] = url
    return subprocess.Popen(
        [sys.executable, "-m", "keyturn", "migrate", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_three_nodes_migrating_one_empty_postgres_at_once(
    store_postgres: StorePostgres, tmp_path: Path
) -> None:
    url = store_postgres.database(migrated=False)
    try:
        procs = [migrate(tmp_path / f"node-{n}", url) for n in range(3)]
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
        # Exactly one migrated; the others found the schema at head once it let them in.
        assert sum("migrated from revision none" in out for out in outputs) == 1, outputs
        assert sum(f"at revision {SCHEMA_HEAD}, the newest" in out for out in outputs) == 2
        assert current_revision(url) == SCHEMA_HEAD
    finally:
        store_postgres.drop(url)


async def test_stores_opened_at_once_on_an_empty_database_all_open(
    store_postgres: StorePostgres,
) -> None:
    url = store_postgres.database(migrated=False)
    stores = await asyncio.gather(*(open_store(url, BOX, FakeClock()) for _ in range(3)))
    try:
        for store in stores:
            assert await store.readiness() is None
            assert await store.list_tenants() == []
    finally:
        for store in stores:
            await store.close()
        store_postgres.drop(url)


def test_keyturn_migrate_on_every_backend(store_backend: StoreBackend, tmp_path: Path) -> None:
    url = None if store_backend.sqlite else store_backend.url
    data_dir = tmp_path / "data"
    first = migrate(data_dir, url)
    out = first.communicate(timeout=120)[0]
    assert first.returncode == 0, out
    if store_backend.sqlite:  # the postgres template is migrated already
        assert f"migrated from revision none to {SCHEMA_HEAD}" in out
        assert current_revision(f"sqlite:///{data_dir / 'keyturn.db'}") == SCHEMA_HEAD
    again = migrate(data_dir, url)
    assert f"at revision {SCHEMA_HEAD}, the newest" in again.communicate(timeout=120)[0]
    assert again.returncode == 0


async def test_an_unreachable_store_is_unavailable_within_the_timeout() -> None:
    url = f"postgresql://keyturn:pw@127.0.0.1:{free_port()}/keyturn"  # nothing listens
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(open_store(url, BOX, FakeClock(), timeout=2), timeout=30)


async def test_a_node_with_another_master_key_is_refused(store_backend: StoreBackend) -> None:
    first = await open_store(store_backend.url, BOX, FakeClock())
    try:
        await first.check_master_key()  # an empty store opens under any key
        await first.put_tenant(Tenant(id="1300000001", name="t"), KeySource.CLI)
        await first.put_access_key(
            AccessKey(id="AKIDnode1", tenant_id="1300000001", secret=Secret("s" * 24))
        )
        await first.check_master_key()
    finally:
        await first.close()
    other = await open_store(store_backend.url, AesGcmSecretBox(b"o" * 32), FakeClock())
    try:
        with pytest.raises(InternalError, match="same master key"):
            await other.check_master_key()
    finally:
        await other.close()
    # The same key as a retired one (an interrupted rotation) still opens it.
    rotating = AesGcmSecretBox(b"o" * 32, retired=[b"k" * 32])
    resumed = await open_store(store_backend.url, rotating, FakeClock())
    try:
        await resumed.check_master_key()
    finally:
        await resumed.close()


async def test_a_server_that_never_answers_is_unavailable_within_the_timeout() -> None:
    """A partition, not a refusal: the TCP handshake completes (the kernel does it) but no
    byte ever comes back, so only libpq's ``connect_timeout`` ends the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"postgresql://keyturn:pw@127.0.0.1:{silent.getsockname()[1]}/keyturn"
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(open_store(url, BOX, FakeClock(), timeout=2), timeout=60)
        assert loop.time() - started < 20  # connect_timeout 2 s, with a wide margin


async def test_a_statement_that_waits_too_long_is_unavailable(
    store_postgres: StorePostgres,
) -> None:
    """A statement blocked past ``KEYTURN_STORE_TIMEOUT`` (here: behind a lock another session
    holds) is cancelled by ``statement_timeout``; the store answers again once it is free."""
    url = store_postgres.database()
    store = await open_store(url, BOX, FakeClock(), timeout=1)
    try:
        with psycopg.connect(url, connect_timeout=5) as blocker:
            blocker.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await store.list_tenants()
            assert loop.time() - started < 15
            blocker.rollback()
        assert await store.list_tenants() == []
    finally:
        await store.close()
        store_postgres.drop(url)


async def test_backend_store_is_ready_on_every_backend(backend_store: SqlStore) -> None:
    assert await backend_store.readiness() is None
    await backend_store.check_master_key()

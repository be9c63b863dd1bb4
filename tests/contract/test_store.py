"""Contract tests of ``SqlStore``: what any store backend must do for the service layer.

The ``backend`` fixture runs on every ``store_backend`` (``tests.support.store_backends``:
SQLite and a throwaway PostgreSQL 15); each yields a fresh, migrated database, the store on it
and a separate raw engine for reading rows as they are stored. The raw-file tests are SQLite
only by nature.
"""

from __future__ import annotations

import asyncio
import itertools
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import (
    Conflict,
    InstanceNotFound,
    InternalError,
    NotFound,
    OperationInProgress,
    TaskNotFound,
)
from keyturn.core.model import (
    AccessKey,
    EngineKind,
    Instance,
    KeySource,
    Node,
    Product,
    Tenant,
    parse_node_url,
)
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page, Store
from keyturn.core.tasks import NewTask, StepPhase, TaskKind, TaskState, TaskStep
from keyturn.store.base import Engine
from keyturn.store.migrate import SCHEMA_HEAD, current_revision, head_revision, sync_url
from keyturn.store.opening import open_engine, open_store, sqlite_url
from keyturn.store.schema import instances, metadata, nodes, tasks
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import StoreBackend

T1 = Tenant(id="1300000001", name="one")
T2 = Tenant(id="1300000002", name="two")
NODE_PW = "Node-Plaintext-Pw-1"
REPLICA_PW = "Replica-Plaintext-Pw-2"
NEW_PW = "Reset-Plaintext-Pw-3"
KEY_SECRET = "AccessKey-Plaintext-Secret-4"
SNAPSHOT_HASH = "Snapshot-Plaintext-Hash-5"
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@dataclass
class Backend:
    url: str
    store: SqlStore
    raw: Engine
    clock: FakeClock

    async def raw_task(self, task_id: int) -> Any:
        async with self.raw.connect() as conn:
            return (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one()

    async def raw_node(self, instance_id: str, ordinal: int) -> Any:
        query = sa.select(nodes).where(
            nodes.c.instance_id == instance_id, nodes.c.ordinal == ordinal
        )
        async with self.raw.connect() as conn:
            return (await conn.execute(query)).one()


@pytest.fixture
def box() -> AesGcmSecretBox:
    return AesGcmSecretBox(b"k" * 32)


@pytest.fixture
async def backend(store_backend: StoreBackend, box: AesGcmSecretBox) -> AsyncIterator[Backend]:
    url = store_backend.url
    clock = FakeClock(T0, tick=1)
    store = await open_store(url, box, clock)
    raw = open_engine(url)
    try:
        yield Backend(url=url, store=store, raw=raw, clock=clock)
    finally:
        await store.close()
        await raw.dispose()


@pytest.fixture
def store(backend: Backend) -> SqlStore:
    return backend.store


def make_instance(
    instance_id: str = "crs-aaaa0001",
    tenant: Tenant = T1,
    *,
    urls: tuple[str, ...] = (
        f"redis://default:{NODE_PW}@10.0.0.1:6379/0",
        f"redis://default:{REPLICA_PW}@10.0.0.2:6379/0",
    ),
    source: KeySource = KeySource.CLI,
) -> Instance:
    return Instance(
        id=instance_id,
        tenant_id=tenant.id,
        product=Product.TENCENT_REDIS,
        region="ap-guangzhou",
        name=f"name of {instance_id}",
        nodes=tuple(
            Node(instance_id=instance_id, ordinal=i, address=parse_node_url(u, EngineKind.REDIS))
            for i, u in enumerate(urls)
        ),
        source=source,
    )


def new_task(instance: Instance, account: str = "app", tenant: Tenant = T1) -> NewTask:
    return NewTask(
        tenant_id=tenant.id,
        instance_id=instance.id,
        account=account,
        kind=TaskKind.RESET_PASSWORD,
        request_id="req-1",
        steps=tuple(
            TaskStep(ordinal=n.ordinal, endpoint=n.address.endpoint) for n in instance.nodes
        ),
    )


async def seed(store: SqlStore, *instances: Instance) -> None:
    await store.put_tenant(T1, KeySource.CLI)
    await store.put_tenant(T2, KeySource.INVENTORY)
    for instance in instances:
        await store.put_instance(instance)


async def run_task(
    store: SqlStore, instance: Instance, account: str = "app", pw: str = NEW_PW
) -> int:
    task = await store.create_task(new_task(instance, account), Secret(pw))
    return task.id


async def finish(
    store: SqlStore, task_id: int, state: TaskState = TaskState.FAILED, *, promote: bool = False
) -> None:
    await store.finish_task(
        task_id, state=state, message="", steps=[], promote_admin=promote, no_auth=None
    )


# --------------------------------------------------------------------------- migrations


async def test_migrations_are_idempotent_and_match_the_schema(
    backend: Backend, box: AesGcmSecretBox
) -> None:
    await seed(backend.store, make_instance())
    again = await open_store(backend.url, box, FakeClock(T0, tick=1))
    try:
        assert len((await again.list_instances(None))[0]) == 1
    finally:
        await again.close()
    assert current_revision(backend.url) == head_revision() == SCHEMA_HEAD
    assert sync_url("sqlite+aiosqlite:///x.db").drivername == "sqlite"
    assert sync_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"

    def diff(conn: sa.Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with backend.raw.connect() as conn:
        assert await conn.run_sync(diff) == []


# --------------------------------------------------------------------------- tenants and keys


async def test_tenants(store: SqlStore) -> None:
    await seed(store)
    await store.put_tenant(replace(T1, name="renamed"), KeySource.INVENTORY)
    assert await store.list_tenants() == [replace(T1, name="renamed"), T2]
    assert await store.tenant_sources() == {T1.id: KeySource.INVENTORY, T2.id: KeySource.INVENTORY}
    await store.remove_tenant(T2.id)
    await store.remove_tenant("never-existed")
    assert await store.list_tenants() == [replace(T1, name="renamed")]


async def test_a_tenant_in_use_is_not_removed(store: SqlStore) -> None:
    await seed(store, make_instance())
    with pytest.raises(Conflict):
        await store.remove_tenant(T1.id)
    assert T1.id in await store.tenant_sources()


async def test_access_keys(store: SqlStore) -> None:
    await seed(store)
    key = AccessKey(id="AKID1", tenant_id=T1.id, secret=Secret(KEY_SECRET))
    await store.put_access_key(key)
    await store.put_access_key(AccessKey(id="AKID2", tenant_id=T2.id, secret=Secret("s2")))
    got = await store.get_access_key("AKID1")
    assert got is not None and got.secret == Secret(KEY_SECRET) and got.enabled
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert KEY_SECRET not in repr(got)
    assert await store.get_access_key("AKID-missing") is None
    assert [k.id for k in await store.list_access_keys()] == ["AKID1", "AKID2"]
    assert [k.id for k in await store.list_access_keys(T2.id)] == ["AKID2"]

    assert await store.set_access_key_enabled("AKID1", False) is True
    assert await store.set_access_key_enabled("AKID-missing", False) is False
    got = await store.get_access_key("AKID1")
    assert got is not None and not got.enabled

    await store.put_access_key(replace(key, secret=Secret("rotated"), source=KeySource.INVENTORY))
    got = await store.get_access_key("AKID1")
    assert got is not None and got.secret == Secret("rotated") and got.source is KeySource.INVENTORY
    await store.remove_access_key("AKID1")
    assert await store.get_access_key("AKID1") is None


async def test_a_key_needs_its_tenant(store: SqlStore) -> None:
    with pytest.raises(NotFound):
        await store.put_access_key(AccessKey(id="AKID1", tenant_id="nobody", secret=Secret("s")))


# --------------------------------------------------------------------------- instances


async def test_instance_roundtrip(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    got = await store.get_instance(T1.id, instance.id)
    assert replace(got, created_at=None) == instance
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert [n.address.password for n in got.nodes] == [Secret(NODE_PW), Secret(REPLICA_PW)]
    assert NODE_PW not in repr(got)


async def test_odd_node_addresses_roundtrip(store: SqlStore) -> None:
    instance = make_instance(
        urls=(
            "rediss://a%3Ab%40c:pw@[::1]:6380/2?ssl_cert_reqs=none",
            "redis://:@host:1",
            "redis://host:2",
        )
    )
    await seed(store, instance)
    got = await store.get_instance(T1.id, instance.id)
    assert got.nodes == instance.nodes
    assert got.nodes[0].address.username == "a:b@c"
    assert got.nodes[1].address.password == Secret("")
    assert got.nodes[2].address.password is None


async def test_instances_are_invisible_to_other_tenants(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    with pytest.raises(InstanceNotFound) as other:
        await store.get_instance(T2.id, instance.id)
    with pytest.raises(InstanceNotFound) as missing:
        await store.get_instance(T1.id, "crs-missing1")
    assert other.value.message == missing.value.message


async def test_put_replaces_and_remove_reports(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    await store.record_observation(instance.id, no_auth=False, engine_version="7.2.4")
    smaller = replace(instance, name="renamed", nodes=instance.nodes[:1])
    await store.put_instance(smaller)
    got = await store.get_instance(T1.id, instance.id)
    assert got.name == "renamed" and len(got.nodes) == 1
    # Observations survive a re-declaration that carries none.
    assert (got.no_auth, got.engine_version) == (False, "7.2.4")
    await store.record_observation(instance.id, no_auth=True, engine_version=None)
    got = await store.get_instance(T1.id, instance.id)
    assert (got.no_auth, got.engine_version) == (True, "7.2.4")

    assert await store.remove_instance(instance.id) is True
    assert await store.remove_instance(instance.id) is False
    with pytest.raises(InstanceNotFound):
        await store.get_instance(T1.id, instance.id)


async def test_list_instances_pages_filters_and_counts(backend: Backend) -> None:
    store = backend.store
    mine = [make_instance(f"crs-a{i:04d}") for i in range(7)]
    theirs = [make_instance(f"crs-b{i:04d}", T2) for i in range(3)]
    await seed(store, *reversed(mine), *theirs)

    selects: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    page, total = await store.list_instances(T1.id, page=Page(limit=3, offset=3))
    cold = len(selects)
    again, total_again = await store.list_instances(T1.id, page=Page(limit=3, offset=3))
    event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert total == total_again == 7 and [i.id for i in page] == [i.id for i in mine[3:6]]
    assert [i.id for i in again] == [i.id for i in page]
    assert all(len(i.nodes) == 2 for i in page)
    # Cold: generation, count, page. Warm: the count comes from the generation-keyed cache.
    assert cold <= 3 and len(selects) - cold <= 2

    everything, total = await store.list_instances(None)
    assert total == 10 and [i.id for i in everything] == [i.id for i in mine + theirs]
    beyond, total = await store.list_instances(T1.id, page=Page(limit=3, offset=50))
    assert (beyond, total) == ([], 7)
    assert (await store.list_instances(T1.id, page=Page(limit=0)))[1] == 7
    wanted = [mine[5].id, mine[1].id, theirs[0].id, "crs-missing"]
    found, total = await store.list_instances(T1.id, instance_ids=wanted)
    assert total == 2 and [i.id for i in found] == [mine[1].id, mine[5].id]
    assert await store.list_instances(T1.id, instance_ids=[]) == ([], 0)
    assert (await store.list_instances(T2.id, product=Product.TENCENT_REDIS))[1] == 3
    assert await store.list_instances(T2.id, product="other-product") == ([], 0)


# --------------------------------------------------------------------------- tasks


async def test_task_lifecycle_wipes_secrets(backend: Backend) -> None:
    store, instance = backend.store, make_instance()
    await seed(store, instance)
    task = await store.create_task(new_task(instance), Secret(NEW_PW))
    assert task.state is TaskState.PREPARING and task.created_at.tzinfo is not None
    assert await store.pending_password(task.id) == Secret(NEW_PW)
    raw = await backend.raw_task(task.id)
    assert raw.pending_sealed.startswith("v1:") and NEW_PW not in raw.pending_sealed
    assert await store.get_task(T1.id, task.id) == task
    assert [t.id for t in await store.unfinished_tasks()] == [task.id]

    snapshots = {
        "127.0.0.1:6379": CredentialSnapshot(
            account="app", data={"hashes": [SNAPSHOT_HASH], "on": True}
        ),
        "127.0.0.1:6380": CredentialSnapshot(account="app", data={}),
    }
    steps = [s.to(StepPhase.PENDING) for s in task.steps]
    running = await store.write_ahead(task.id, snapshots=snapshots, admin_pending={}, steps=steps)
    assert running.state is TaskState.RUNNING and running.started_at is not None
    assert await store.snapshots(task.id) == snapshots
    assert await store.get_task(T1.id, task.id) == running
    with pytest.raises(InternalError):
        await store.write_ahead(task.id, snapshots=snapshots, admin_pending={}, steps=steps)

    applied = [s.to(StepPhase.APPLIED, "not persisted") for s in steps]
    await store.update_steps(task.id, applied)
    assert (await store.get_task(T1.id, task.id)).steps == tuple(applied)

    verified = [s.to(StepPhase.VERIFIED) for s in applied]
    done = await store.finish_task(
        task.id,
        state=TaskState.SUCCEED,
        message="ok",
        steps=verified,
        promote_admin=True,
        no_auth=False,
        verified_at=T0,
    )
    assert done.state is TaskState.SUCCEED and done.verified_at == T0
    assert done.finished_at is not None and done.steps == tuple(verified)
    assert await store.get_task(T1.id, task.id) == done
    raw = await backend.raw_task(task.id)
    assert raw.pending_sealed is None and raw.snapshots_sealed is None
    assert await store.pending_password(task.id) is None
    assert await store.snapshots(task.id) == {}
    assert await store.unfinished_tasks() == []
    assert (await store.get_instance(T1.id, instance.id)).no_auth is False
    with pytest.raises(InternalError):
        await finish(store, task.id)


async def test_a_task_cannot_succeed_without_running(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    task_id = await run_task(store, instance)
    with pytest.raises(InternalError):
        await finish(store, task_id, TaskState.SUCCEED)
    assert (await store.get_task(T1.id, task_id)).state is TaskState.PREPARING


async def test_tasks_are_invisible_to_other_tenants(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    task_id = await run_task(store, instance)
    with pytest.raises(TaskNotFound):
        await store.get_task(T2.id, task_id)
    with pytest.raises(TaskNotFound):
        await store.get_task(T1.id, task_id + 1000)
    assert await store.list_tasks(T2.id, instance_id=None, page=Page(limit=10)) == ([], 0)
    with pytest.raises(TaskNotFound):
        await store.pending_password(task_id + 1000)


async def test_list_tasks_newest_first(store: SqlStore) -> None:
    a, b = make_instance("crs-aaaa0001"), make_instance("crs-aaaa0002")
    await seed(store, a, b)
    ids = [await run_task(store, a, f"u{i}") for i in range(3)] + [await run_task(store, b)]
    listed, total = await store.list_tasks(T1.id, instance_id=None, page=Page(limit=2))
    assert total == 4 and [t.id for t in listed] == [ids[3], ids[2]]
    listed, total = await store.list_tasks(T1.id, instance_id=a.id, page=Page(limit=2, offset=2))
    assert total == 3 and [t.id for t in listed] == [ids[0]]
    assert (await store.list_tasks(T1.id, instance_id=a.id, page=Page(limit=5, offset=9)))[1] == 3
    assert [t.id for t in await store.unfinished_tasks()] == ids


async def test_task_ids_are_random_and_say_nothing_across_tenants(store: SqlStore) -> None:
    """Two tenants resetting in turns: neither can tell from its own ids that the other
    exists (no sequence to count), and every id is exact in a JSON number."""
    mine, theirs = make_instance("crs-aaaa0001"), make_instance("crs-bbbb0001", tenant=T2)
    await seed(store, mine, theirs)
    ids: list[int] = []
    for n in range(20):
        for instance, tenant in ((mine, T1), (theirs, T2)):
            task = await store.create_task(new_task(instance, f"u{n}", tenant), None)
            ids.append(task.id)
    assert len(set(ids)) == len(ids)
    assert all(1 <= task_id < 2**53 for task_id in ids)
    assert all(abs(b - a) > 1 for a, b in itertools.pairwise(ids)), ids
    # Spread over the whole range, not a sequence from some random start: 40 draws all
    # below 2**48 would happen once in 2**200 runs.
    assert max(ids) >= 2**48 and sorted(ids) != ids
    for tenant, instance in ((T1, mine), (T2, theirs)):
        listed, total = await store.list_tasks(tenant.id, instance_id=None, page=Page(limit=50))
        assert total == 20 and {t.instance_id for t in listed} == {instance.id}


async def test_a_task_id_collision_draws_again(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = make_instance()
    await seed(store, instance)
    taken = await run_task(store, instance, "first")
    draws = iter([taken, taken, 2**53 - 1])
    monkeypatch.setattr(store.tasks, "new_task_id", lambda: next(draws))
    task = await store.create_task(new_task(instance, "second"), Secret(NEW_PW))
    assert task.id == 2**53 - 1
    assert (await store.get_task(T1.id, taken)).account == "first"  # untouched
    assert await store.pending_password(task.id) == Secret(NEW_PW)
    # A store that never finds a free id fails cleanly, and creates nothing.
    monkeypatch.setattr(store.tasks, "new_task_id", lambda: taken)
    with pytest.raises(InternalError):
        await store.create_task(new_task(instance, "third"), None)
    assert (await store.list_tasks(T1.id, instance_id=None, page=Page(limit=9)))[1] == 2


async def test_tasks_are_listed_by_creation_time_not_id(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, instance = backend.store, make_instance()
    await seed(store, instance)
    # Ids that fall as time goes on, and two tasks created in the same microsecond.
    draws = iter([900, 500, 700, 100])
    monkeypatch.setattr(store.tasks, "new_task_id", lambda: next(draws))
    for account in ("a", "b"):
        await run_task(store, instance, account)
    moment = backend.clock.now()
    monkeypatch.setattr(backend.clock, "now", lambda: moment)
    for account in ("c", "d"):
        await run_task(store, instance, account)
    listed, total = await store.list_tasks(T1.id, instance_id=None, page=Page(limit=10))
    # Newest first; within one instant the larger id first (any fixed order would do).
    assert total == 4 and [t.account for t in listed] == ["c", "d", "b", "a"]
    listed, _ = await store.list_tasks(T1.id, instance_id=instance.id, page=Page(limit=2))
    assert [t.id for t in listed] == [700, 100]
    # Recovery takes the oldest first.
    assert [t.account for t in await store.unfinished_tasks()] == ["a", "b", "d", "c"]


async def test_one_active_task_per_account(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    assert await store.active_task(instance.id, "app") is None
    first = await run_task(store, instance)
    assert await store.active_task(instance.id, "app") == first
    with pytest.raises(OperationInProgress):
        await run_task(store, instance)
    other = await run_task(store, instance, account="other")  # another account is free
    await store.write_ahead(first, snapshots={}, admin_pending={}, steps=[])
    with pytest.raises(OperationInProgress):
        await store.create_task(new_task(instance), None)
    assert await store.active_task(instance.id, "app") == first
    await finish(store, first, TaskState.FAILED)
    assert await store.active_task(instance.id, "app") is None
    again = await run_task(store, instance)
    assert len({first, other, again}) == 3
    await finish(store, again, TaskState.FAILED)
    assert await store.create_task(new_task(instance), None)


async def test_concurrent_requests_get_one_active_task(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    results = await asyncio.gather(
        *(run_task(store, instance) for _ in range(20)),
        *(store.put_tenant(Tenant(id=f"t{i}", name=""), KeySource.CLI) for i in range(20)),
        *(store.list_instances(None) for _ in range(20)),
        return_exceptions=True,
    )
    created = [r for r in results[:20] if isinstance(r, int)]
    assert len(created) == 1
    assert all(isinstance(r, OperationInProgress) for r in results[:20] if r not in created)
    assert not [r for r in results[20:] if isinstance(r, BaseException)]
    assert len(await store.list_tenants()) == 22


@pytest.mark.parametrize("promote", [True, False])
async def test_admin_credential_promotion_and_discard(backend: Backend, promote: bool) -> None:
    store, instance = backend.store, make_instance()
    await seed(store, instance)
    task_id = await run_task(store, instance, account="default")
    await store.write_ahead(
        task_id, snapshots={}, admin_pending={0: Secret(NEW_PW), 1: Secret(NEW_PW)}, steps=[]
    )
    pending = await store.get_instance(T1.id, instance.id)
    assert [n.pending_password for n in pending.nodes] == [Secret(NEW_PW)] * 2
    assert [n.address.password for n in pending.nodes] == [Secret(NODE_PW), Secret(REPLICA_PW)]
    # A re-declaration (inventory reload) keeps the pending credential of the running task.
    await store.put_instance(instance)
    assert (await store.get_instance(T1.id, instance.id)).nodes == pending.nodes
    # A task on another account of the same instance does not settle it.
    other = await run_task(store, instance, account="app")
    await finish(store, other, TaskState.FAILED)
    assert (await store.get_instance(T1.id, instance.id)).nodes == pending.nodes

    await finish(
        store, task_id, TaskState.SUCCEED if promote else TaskState.FAILED, promote=promote
    )
    after = await store.get_instance(T1.id, instance.id)
    assert [n.pending_password for n in after.nodes] == [None, None]
    expected = [NEW_PW, NEW_PW] if promote else [NODE_PW, REPLICA_PW]
    assert [n.address.password for n in after.nodes] == [Secret(pw) for pw in expected]
    raw = await backend.raw_node(instance.id, 0)
    assert raw.pending_password_sealed is None and NEW_PW not in raw.password_sealed
    assert after.no_auth is None


async def test_write_ahead_refuses_nodes_the_task_does_not_administer(store: SqlStore) -> None:
    instance = make_instance()
    await seed(store, instance)
    admin_task = await run_task(store, instance, account="default")
    app_task = await run_task(store, instance, account="app")
    for task_id, ordinal in [(admin_task, 7), (app_task, 0)]:
        with pytest.raises(InternalError):
            await store.write_ahead(
                task_id, snapshots={}, admin_pending={ordinal: Secret("x")}, steps=[]
            )
        assert (await store.get_task(T1.id, task_id)).state is TaskState.PREPARING
    assert all(
        n.pending_password is None for n in (await store.get_instance(T1.id, instance.id)).nodes
    )


def as_port(store: SqlStore) -> Store:
    """Checked by mypy: ``SqlStore`` implements the ``Store`` port."""
    return store


async def test_database_errors_become_internal_errors(backend: Backend) -> None:
    async with backend.raw.begin() as conn:
        await conn.execute(sa.text("DROP TABLE tasks"))
    with pytest.raises(InternalError) as caught:
        await backend.store.unfinished_tasks()
    assert caught.value.message == "the store could not complete the operation"


async def test_sealed_values_are_bound_to_their_row(backend: Backend) -> None:
    """A sealed value copied to another row does not open there."""
    store, a, b = backend.store, make_instance("crs-aaaa0001"), make_instance("crs-aaaa0002")
    await seed(store, a, b)
    token = (await backend.raw_node(a.id, 0)).password_sealed
    async with backend.raw.begin() as conn:
        await conn.execute(
            sa.update(nodes)
            .where(nodes.c.instance_id == b.id, nodes.c.ordinal == 0)
            .values(password_sealed=token)
        )
    with pytest.raises(InternalError, match="does not open"):
        await store.get_instance(T1.id, b.id)


# --------------------------------------------------------------------------- on disk (SQLite)


async def test_no_plaintext_secret_reaches_the_sqlite_files(
    tmp_path: Path, box: AesGcmSecretBox
) -> None:
    store = await open_store(sqlite_url(tmp_path), box, FakeClock(T0, tick=1))
    try:
        instance = make_instance()
        await seed(store, instance)
        await store.put_access_key(
            AccessKey(id="AKID1", tenant_id=T1.id, secret=Secret(KEY_SECRET))
        )
        task_id = await run_task(store, instance, account="default")
        await store.write_ahead(
            task_id,
            snapshots={
                "127.0.0.1:6379": CredentialSnapshot(account="default", data={"h": SNAPSHOT_HASH})
            },
            admin_pending={0: Secret(NEW_PW)},
            steps=[],
        )
        files = [tmp_path / "keyturn.db", tmp_path / "keyturn.db-wal"]
        assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600, 0o600]
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert_no_plaintext(files)
        wiped = [
            (await raw_row(store, tasks, tasks.c.id == task_id)).pending_sealed,
            (await raw_row(store, nodes, nodes.c.ordinal == 0)).pending_password_sealed,
        ]
        await finish(store, task_id, TaskState.SUCCEED, promote=True)
        assert_no_plaintext(files)
    finally:
        await store.close()
    assert_no_plaintext([tmp_path / "keyturn.db"])
    # secure_delete: once checkpointed, even the wiped sealed values are gone from the file.
    data = (tmp_path / "keyturn.db").read_bytes()
    assert all(token and token.encode() not in data for token in wiped)


async def raw_row(store: SqlStore, table: sa.Table, where: sa.ColumnElement[bool]) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.select(table).where(where))).one()


def assert_no_plaintext(files: list[Path]) -> None:
    needles = [NODE_PW, REPLICA_PW, NEW_PW, KEY_SECRET, SNAPSHOT_HASH]
    for path in files:
        if not path.exists():
            continue
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} found in {path.name}"


async def test_list_instances_pages_right_with_many_instances(
    tmp_path: Path, box: AesGcmSecretBox
) -> None:
    """100,000 instances: a deep page and its total are right (how fast is the benchmark's
    scenario 5, never a test's)."""
    url = sqlite_url(tmp_path)
    store = await open_store(url, box, FakeClock(T0, tick=1))
    raw = open_engine(url)
    try:
        await seed(store)
        rows = [
            {
                "id": f"crs-{i:06d}",
                "tenant_id": T1.id if i % 2 else T2.id,
                "product": "tencent-redis",
                "region": "r",
                "name": "",
                "password_free_allowed": True,
                "source": "cli",
                "created_at": T0,
            }
            for i in range(100_000)
        ]
        node_rows = [
            {
                "instance_id": row["id"],
                "ordinal": 0,
                "public_url": "redis://default@10.0.0.1:6379",
                "username": "default",
                "password_sealed": box.seal("pw", context=f"node:{row['id']}:0:password"),
            }
            for row in rows
        ]
        async with raw.begin() as conn:
            await conn.execute(sa.insert(instances), rows)
            await conn.execute(sa.insert(nodes), node_rows)
        page, total = await store.list_instances(T1.id, page=Page(limit=100, offset=40_000))
        assert total == 50_000 and len(page) == 100 and page[0].id == "crs-080001"
        assert page[0].nodes[0].address.password == Secret("pw")
    finally:
        await store.close()
        await raw.dispose()


async def test_deep_pages_and_counts_follow_changes(backend: Backend) -> None:
    """Deep offsets start from cached anchors; adding or removing an instance (here or from
    another process) invalidates counts and anchors at once."""
    from keyturn.store import listing

    store = backend.store
    count = listing.STEP * 2 + 37
    await seed(store, *(make_instance(f"crs-d{i:05d}") for i in range(count)))
    ids = [f"crs-d{i:05d}" for i in range(count)]
    for offset in (0, listing.STEP - 1, listing.STEP, listing.STEP * 2 + 5, count - 3, count):
        page, total = await store.list_instances(T1.id, page=Page(limit=4, offset=offset))
        assert total == count
        assert [i.id for i in page] == ids[offset : offset + 4]
    await store.remove_instance(ids[0])
    page, total = await store.list_instances(T1.id, page=Page(limit=4, offset=listing.STEP))
    assert total == count - 1 and [i.id for i in page] == ids[listing.STEP + 1 : listing.STEP + 5]


# --------------------------------------------------------------------------- replay memory


async def test_a_nonce_is_new_once_until_it_expires(store: SqlStore) -> None:
    later = T0.replace(minute=9)
    assert await store.remember_nonce("AKID1", "n-1", expires_at=later, now=T0)
    assert not await store.remember_nonce("AKID1", "n-1", expires_at=later, now=T0)
    # Another key's nonce of the same text is another nonce.
    assert await store.remember_nonce("AKID2", "n-1", expires_at=later, now=T0)
    # Expired: taken over, and remembered again.
    assert await store.remember_nonce("AKID1", "n-1", expires_at=later.replace(hour=4), now=later)
    assert not await store.remember_nonce("AKID1", "n-1", expires_at=later, now=later)
    await store.forget_nonce("AKID1", "n-1")
    assert await store.remember_nonce("AKID1", "n-1", expires_at=later, now=T0)
    assert await store.purge_nonces(later.replace(hour=5)) == 2


async def test_concurrent_copies_of_a_nonce_admit_one(store: SqlStore) -> None:
    later = T0.replace(minute=9)
    fresh = await asyncio.gather(
        *(store.remember_nonce("AKID1", "same", expires_at=later, now=T0) for _ in range(8))
    )
    assert sorted(fresh) == [False] * 7 + [True]

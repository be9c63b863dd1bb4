"""Contract tests of managed secrets in the store, on SQLite and PostgreSQL: passwords are sealed
(never plaintext in a row), a scheduled slot fires once however many handles race for it, one
unfinished flow per instance account, ending a flow promotes its version exactly once, other
tenants see nothing, and the scheduler's one read per tick (``pending_work``) tells what is
pending."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from keyturn.core.errors import (
    OperationInProgress,
    RotationFlowNotFound,
    SecretExists,
    SecretNotFound,
)
from keyturn.core.model import KeySource, Tenant
from keyturn.core.secret_manager import (
    DropOld,
    FlowState,
    RotationFlow,
    SecretSpec,
    SecretVendor,
    SecretVersion,
    VersionStage,
    flow_lock_key,
)
from keyturn.core.secret_schedule import PendingWork
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock, fake_flow
from tests.support.store_backends import BACKEND_KEY, StoreBackend

T0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
TENANT = "1300000001"


def spec(name: str = "orders-redis", account: str = "app") -> SecretSpec:
    return SecretSpec(
        tenant_id=TENANT,
        name=name,
        vendor=SecretVendor.TENCENT_SSM,
        instance_id="crs-5a4py64p",
        account=account,
        rotation=timedelta(days=30),
        begin=time(2, 0),
        window=timedelta(hours=2),
        source="inventory",
    )


def flow(name: str, n: int, at: datetime = T0) -> tuple[RotationFlow, SecretVersion]:
    made = fake_flow(
        f"flow-{name}-{n}",
        tenant_id=TENANT,
        name=name,
        created_at=at + timedelta(seconds=n),
        version_id=f"v-{name}-{n}",
    )
    version = SecretVersion(
        version_id=made.version_id,
        stages=(),
        created_at=at + timedelta(microseconds=n),
        password=Secret(f"Pw-{name}-{n}-Zz9!"),
        account="app",
    )
    return made, version


async def repo_on(store: SqlStore) -> SqlSecrets:
    await store.put_tenant(Tenant(id=TENANT, name="t"), KeySource.CLI)
    return SqlSecrets(store.db)


async def test_a_secret_round_trips_and_is_scoped_by_tenant(
    backend_store: SqlStore,
) -> None:
    repo = await repo_on(backend_store)
    record = await repo.insert_secret(spec(), created_at=T0, next_rotation_at=T0 + timedelta(1))
    assert record.spec == spec()
    assert (record.rotation_enabled, record.anchor_at) == (True, T0 + timedelta(1))
    with pytest.raises(SecretExists):
        await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    with pytest.raises(SecretNotFound):
        await repo.get_secret("1399999999", "orders-redis")
    await repo.insert_secret(spec("b-secret"), created_at=T0, next_rotation_at=None)
    found, total = await repo.list_secrets(TENANT, page=Page(limit=1, offset=1))
    assert ([r.name for r in found], total) == (["orders-redis"], 2)
    assert (await repo.list_secrets("1399999999"))[1] == 0
    paused = await repo.set_rotation(
        TENANT,
        "orders-redis",
        enabled=False,
        period=timedelta(hours=6),
        begin=None,
        window=None,
        next_rotation_at=None,
    )
    assert (paused.rotation_enabled, paused.spec.rotation, paused.next_rotation_at) == (
        False,
        timedelta(hours=6),
        None,
    )
    assert await repo.delete_secret(TENANT, "orders-redis")
    assert not await repo.delete_secret(TENANT, "orders-redis")


async def test_versions_are_sealed_and_promoted_once(
    backend_store: SqlStore, store_backend: StoreBackend
) -> None:
    repo = await repo_on(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    for n in (1, 2, 3):
        made, version = flow("orders-redis", n)
        assert await repo.start_flow(made, version, lock_key=flow_lock_key("crs-5a4py64p", "app"))
        await repo.set_flow_task(made.flow_id, 100 + n)
        assert (await repo.get_flow(TENANT, made.flow_id)).state is FlowState.RUNNING
        assert await repo.finish_flow(made.flow_id, succeeded=True, at=T0)
        assert not await repo.finish_flow(made.flow_id, succeeded=False, at=T0)
    versions = {v.version_id: v for v in await repo.versions(TENANT, "orders-redis")}
    assert versions["v-orders-redis-3"].stages == (VersionStage.CURRENT,)
    assert versions["v-orders-redis-2"].stages == (VersionStage.PREVIOUS,)
    assert versions["v-orders-redis-1"].stages == ()
    assert versions["v-orders-redis-3"].password == Secret("Pw-orders-redis-3-Zz9!")
    record = await repo.get_secret(TENANT, "orders-redis")
    assert (record.current_version, record.failures) == ("v-orders-redis-3", 0)
    with store_backend.raw() as raw:
        stored = [
            r[0] for r in raw.execute("SELECT password_sealed FROM secret_versions").fetchall()
        ]
    assert stored and all("Pw-" not in token for token in stored)
    history = await repo.flows(TENANT, "orders-redis", limit=2)
    assert [f.flow_id for f in history] == ["flow-orders-redis-3", "flow-orders-redis-2"]
    with pytest.raises(RotationFlowNotFound):
        await repo.get_flow("1399999999", "flow-orders-redis-3")


async def test_a_failure_counts_and_keeps_the_current_version(backend_store: SqlStore) -> None:
    repo = await repo_on(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    made, version = flow("orders-redis", 1)
    await repo.start_flow(made, version, lock_key="k")
    retry = T0 + timedelta(seconds=30)
    await repo.finish_flow(
        made.flow_id,
        succeeded=False,
        at=T0,
        message="down",
        error_code="EngineUnavailable",
        next_rotation_at=retry,
    )
    record = await repo.get_secret(TENANT, "orders-redis")
    assert (record.failures, record.next_rotation_at, record.current_version) == (1, retry, None)
    ended = await repo.get_flow(TENANT, made.flow_id)
    assert (ended.state, ended.error_code) == (FlowState.FAILED, "EngineUnavailable")
    assert [v.stages for v in await repo.versions(TENANT, "orders-redis")] == [()]
    assert await repo.unfinished_flows() == []


async def test_one_unfinished_flow_per_instance_account(backend_store: SqlStore) -> None:
    repo = await repo_on(backend_store)
    await repo.insert_secret(spec("a"), created_at=T0, next_rotation_at=None)
    await repo.insert_secret(spec("b"), created_at=T0, next_rotation_at=None)
    lock = flow_lock_key("crs-5a4py64p", "app")
    first, v1 = flow("a", 1)
    assert await repo.start_flow(first, v1, lock_key=lock)
    second, v2 = flow("b", 1)
    with pytest.raises(OperationInProgress):
        await repo.start_flow(second, v2, lock_key=lock)
    assert [f.flow_id for f in await repo.unfinished_flows()] == ["flow-a-1"]
    await repo.finish_flow(first.flow_id, succeeded=True, at=T0)
    assert await repo.start_flow(second, v2, lock_key=lock)


async def test_a_slot_fires_once_across_racing_nodes(
    backend_store: SqlStore, store_backend: StoreBackend
) -> None:
    repo = await repo_on(backend_store)
    slot = T0 + timedelta(days=1)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=slot)
    assert [r.name for r in await repo.due_secrets(slot)] == ["orders-redis"]
    assert await repo.due_secrets(slot - timedelta(seconds=1)) == []
    others = [
        await open_store(store_backend.url, AesGcmSecretBox(BACKEND_KEY), FakeClock(tick=1))
        for _ in range(3)
    ]
    try:
        repos = [repo, *(SqlSecrets(o.db) for o in others)]
        attempts = []
        for n, node in enumerate(repos):
            made, version = flow("orders-redis", n)
            attempts.append(
                node.start_flow(
                    made,
                    version,
                    lock_key=f"lock-{n}",
                    expect_next=slot,
                    next_rotation_at=slot + timedelta(days=30),
                )
            )
        won = await asyncio.gather(*attempts)
    finally:
        for other in others:
            await other.close()
    assert sorted(won) == [False, False, False, True]
    record = await repo.get_secret(TENANT, "orders-redis")
    assert record.next_rotation_at == slot + timedelta(days=30)
    assert len(await repo.unfinished_flows()) == 1
    moved = slot + timedelta(days=30)
    assert not await repo.reschedule(
        TENANT, "orders-redis", expect_next=slot, next_rotation_at=slot
    )
    assert await repo.reschedule(TENANT, "orders-redis", expect_next=moved, next_rotation_at=slot)


async def test_an_overlap_drop_is_claimed_once(backend_store: SqlStore) -> None:
    repo = await repo_on(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    made, version = flow("orders-redis", 1)
    await repo.start_flow(made, version, lock_key="k")
    drop_at = T0 + timedelta(minutes=10)
    await repo.finish_flow(made.flow_id, succeeded=True, at=T0, drop_old_at=drop_at)
    assert await repo.due_drops(T0) == []
    assert [f.flow_id for f in await repo.due_drops(drop_at)] == [made.flow_id]
    until = drop_at + timedelta(minutes=1)
    assert await repo.claim_drop(made.flow_id, expect=drop_at, until=until)
    assert not await repo.claim_drop(made.flow_id, expect=drop_at, until=until, failures=9)
    # A failed try: pending again, its count kept on the flow for whichever node retries.
    assert await repo.claim_drop(made.flow_id, expect=until, until=drop_at, failures=1)
    [again] = await repo.due_drops(drop_at)
    assert again.drop_failures == 1
    assert await repo.claim_drop(made.flow_id, expect=drop_at, until=until)
    assert await repo.claim_drop(made.flow_id, expect=until, until=None)
    assert await repo.due_drops(until) == []
    assert (await repo.get_flow(TENANT, made.flow_id)).drop_failures == 1


async def test_pending_work_tells_the_earliest_slot_drop_and_any_unfinished_flow(
    backend_store: SqlStore,
) -> None:
    repo = await repo_on(backend_store)
    assert await repo.pending_work() == PendingWork()
    later, sooner = T0 + timedelta(days=2), T0 + timedelta(days=1)
    await repo.insert_secret(spec("later"), created_at=T0, next_rotation_at=later)
    await repo.insert_secret(spec("sooner", "b"), created_at=T0, next_rotation_at=sooner)
    await repo.insert_secret(spec("paused", "c"), created_at=T0, next_rotation_at=None)
    assert await repo.pending_work() == PendingWork(next_rotation_at=sooner)
    made, version = flow("paused", 1)
    await repo.start_flow(made, version, lock_key="k")
    assert await repo.pending_work() == PendingWork(unfinished=True, next_rotation_at=sooner)
    drop_at = T0 + timedelta(minutes=10)
    await repo.finish_flow(made.flow_id, succeeded=True, at=T0, drop_old_at=drop_at)
    work = PendingWork(next_rotation_at=sooner, drop_old_at=drop_at)
    assert await repo.pending_work() == work
    assert work.drop_due(drop_at) and not work.rotation_due(drop_at)
    assert await repo.claim_drop(made.flow_id, expect=drop_at, until=None)
    assert await repo.pending_work() == PendingWork(next_rotation_at=sooner)


async def test_old_passwords_dropped_when_unused_are_listed_while_the_overlap_lasts(
    backend_store: SqlStore,
) -> None:
    repo = await repo_on(backend_store)
    eager = replace(
        spec("eager"),
        overlap=timedelta(hours=1),
        drop_old=DropOld.WHEN_UNUSED,
        end_old_sessions=True,
    )
    await repo.insert_secret(eager, created_at=T0, next_rotation_at=None)
    await repo.insert_secret(
        replace(spec("patient", "other"), overlap=timedelta(hours=1)),
        created_at=T0,
        next_rotation_at=None,
    )
    stored = await repo.get_secret(TENANT, "eager")
    assert (stored.spec.drop_old, stored.spec.end_old_sessions) == (DropOld.WHEN_UNUSED, True)
    drop_at = T0 + timedelta(hours=1)
    for name, lock in (("eager", "k1"), ("patient", "k2")):
        made, version = flow(name, 1)
        await repo.start_flow(made, version, lock_key=lock)
        await repo.finish_flow(made.flow_id, succeeded=True, at=T0, drop_old_at=drop_at)
    assert [f.flow_id for f in await repo.pending_unused_drops(T0)] == ["flow-eager-1"]
    # Once due, it is the overlap's end that drops it (``due_drops``), not this list.
    assert await repo.pending_unused_drops(drop_at) == []

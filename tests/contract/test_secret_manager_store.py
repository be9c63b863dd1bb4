"""The ``SecretManager`` use cases that need no engine, on both stores: values by stage and by
id (a pending or failed version is never handed out), schedule changes (pause keeps the
period, resume starts from the next slot, a datetime begin names the first slot), a CLI
``rotate-now`` makes the secret due once, and inventory reconciliation updates and forgets only
its own secrets; a create that cannot begin leaves no secret behind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import cast

import pytest

from keyturn.core.errors import (
    DomainError,
    InstanceNotFound,
    InternalError,
    InvalidParameterValue,
    OperationInProgress,
    PasswordPolicyViolation,
    SecretNotFound,
    SecretVersionNotFound,
)
from keyturn.core.model import Instance, KeySource, Product, Tenant
from keyturn.core.secret_manager import (
    FlowTrigger,
    SecretRecord,
    SecretSpec,
    SecretVendor,
    SecretVersion,
)
from keyturn.core.secrets import Secret
from keyturn.service.secret_rotation import Rotator
from keyturn.service.secrets import SecretManager
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock, fake_flow

TENANT = "1300000001"
T0 = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


def spec(name: str = "orders-redis", source: str = "inventory") -> SecretSpec:
    return SecretSpec(
        tenant_id=TENANT,
        name=name,
        vendor=SecretVendor.TENCENT_SSM,
        instance_id="crs-5a4py64p",
        account="app",
        rotation=timedelta(days=1),
        begin=time(2, 0),
        source=source,
    )


async def setup(store: SqlStore) -> tuple[SqlSecrets, SecretManager, FakeClock]:
    await store.put_tenant(Tenant(id=TENANT, name="t"), KeySource.CLI)
    repo = SqlSecrets(store.db)
    clock = FakeClock(T0)
    return repo, SecretManager(repo, None, clock), clock


async def rotate(repo: SqlSecrets, n: int, *, ok: bool = True) -> None:
    flow = fake_flow(
        f"flow-{n}",
        tenant_id=TENANT,
        name="orders-redis",
        created_at=T0 + timedelta(seconds=n),
        version_id=f"v-{n}",
    )
    version = SecretVersion(
        version_id=flow.version_id,
        stages=(),
        created_at=flow.created_at,
        password=Secret(f"Pw-{n}-Aa9!xyz"),
        account="app",
    )
    await repo.start_flow(flow, version, lock_key="k")
    await repo.finish_flow(flow.flow_id, succeeded=ok, at=flow.created_at)


async def test_values_by_stage_and_id(backend_store: SqlStore) -> None:
    repo, manager, _ = await setup(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    with pytest.raises(SecretVersionNotFound):
        await manager.get_secret_value(TENANT, "orders-redis")
    await rotate(repo, 1)
    await rotate(repo, 2)
    await rotate(repo, 3, ok=False)
    current = await manager.get_secret_value(TENANT, "orders-redis")
    assert (current.version_id, current.password) == ("v-2", Secret("Pw-2-Aa9!xyz"))
    previous = await manager.get_secret_value(TENANT, "orders-redis", version_stage="ACSPrevious")
    assert previous.version_id == "v-1"
    assert (await manager.get_secret_value(TENANT, "orders-redis", version_id="v-1")).stages
    with pytest.raises(SecretVersionNotFound):
        await manager.get_secret_value(TENANT, "orders-redis", version_id="v-3")  # failed
    with pytest.raises(InvalidParameterValue):
        await manager.get_secret_value(TENANT, "orders-redis", version_stage="ACSPending")
    with pytest.raises(SecretNotFound):
        await manager.get_secret_value("1399999999", "orders-redis")
    assert [v.version_id for v in await manager.list_versions(TENANT, "orders-redis")] == [
        "v-2",
        "v-1",
    ]
    assert [f.flow_id for f in await manager.rotation_history(TENANT, "orders-redis")] == [
        "flow-3",
        "flow-2",
        "flow-1",
    ]
    with pytest.raises(InternalError):
        await manager.rotate_now(TENANT, "orders-redis")  # this manager runs no engines


async def test_schedule_changes(backend_store: SqlStore) -> None:
    repo, manager, clock = await setup(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=manager.first_slot(spec(), T0))
    status = await manager.describe_rotation(TENANT, "orders-redis")
    assert (status.enabled, status.next_rotation_at) == (
        True,
        datetime(2026, 1, 1, 2, 0, tzinfo=UTC),
    )
    paused = await manager.pause(TENANT, "orders-redis")
    assert (paused.enabled, paused.period, paused.next_rotation_at) == (
        False,
        timedelta(days=1),
        None,
    )
    clock.moment = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    resumed = await manager.resume(TENANT, "orders-redis")
    assert resumed.next_rotation_at == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)  # no burst
    first = datetime(2026, 2, 1, 3, 15, tzinfo=UTC)
    moved = await manager.update_rotation(
        TENANT, "orders-redis", enabled=True, period=timedelta(hours=6), begin=first
    )
    assert (moved.next_rotation_at, moved.begin, moved.period) == (
        first,
        time(3, 15),
        timedelta(hours=6),
    )
    due = await manager.request_rotation(TENANT, "orders-redis")
    assert due == clock.moment
    assert [r.name for r in await repo.due_secrets(clock.moment)] == ["orders-redis"]
    assert await manager.request_rotation(TENANT, "orders-redis") == due  # already due
    # The scheduler fires it as manual (``keyturn secrets history``).
    assert (await repo.get_secret(TENANT, "orders-redis")).rotate_requested_at == due
    await manager.pause(TENANT, "orders-redis")
    with pytest.raises(InvalidParameterValue):
        await manager.update_rotation(TENANT, "orders-redis", enabled=True, period=timedelta(0))
    await manager.delete_secret(TENANT, "orders-redis")
    with pytest.raises(SecretNotFound):
        await manager.delete_secret(TENANT, "orders-redis")


async def test_reconcile_updates_and_forgets_only_inventory_secrets(
    backend_store: SqlStore,
) -> None:
    repo, manager, _ = await setup(backend_store)
    await repo.insert_secret(spec(), created_at=T0, next_rotation_at=None)
    await repo.insert_secret(spec("gone"), created_at=T0, next_rotation_at=None)
    await repo.insert_secret(spec("by-api", source="cli"), created_at=T0, next_rotation_at=None)
    changed = replace(spec(), rotation=timedelta(hours=12), description="now 12h")
    report = await manager.reconcile([changed])
    assert (report.created, report.updated, report.removed) == (0, 1, 1)
    record = await repo.get_secret(TENANT, "orders-redis")
    assert (record.spec.rotation, record.spec.description) == (timedelta(hours=12), "now 12h")
    assert record.next_rotation_at == datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    names = [r.name for r in (await repo.list_secrets(TENANT))[0]]
    assert names == ["by-api", "orders-redis"]
    again = await manager.reconcile([changed])
    assert (again.created, again.updated, again.removed) == (0, 0, 0)


class StubRotator(Rotator):
    """An instance of ``product`` that exists; launching raises ``error`` (or starts nothing)."""

    def __init__(self, error: DomainError | None) -> None:  # no engines, no store of its own
        self.error = error
        self.launched = 0

    async def instance_of(self, spec: SecretSpec) -> Instance:
        return cast(Instance, SimpleNamespace(product=Product.TENCENT_REDIS, id=spec.instance_id))

    async def launch(
        self,
        record: SecretRecord,
        trigger: FlowTrigger,
        *,
        password: Secret | None = None,
        expect_next: datetime | None = None,
        next_rotation_at: datetime | None = None,
        flow_id: str | None = None,
    ) -> str:
        self.launched += 1
        if self.error is not None:
            raise self.error
        return "flow-x"


async def test_a_create_that_cannot_begin_leaves_nothing(backend_store: SqlStore) -> None:
    repo, _, clock = await setup(backend_store)
    busy = SecretManager(repo, StubRotator(OperationInProgress()), clock)
    with pytest.raises(OperationInProgress):
        await busy.create_secret(spec(), wait=False)
    with pytest.raises(SecretNotFound):
        await repo.get_secret(TENANT, "orders-redis")
    refused = StubRotator(None)
    manager = SecretManager(repo, refused, clock)
    with pytest.raises(PasswordPolicyViolation):
        await manager.create_secret(spec(), password=Secret("short"), wait=False)
    assert refused.launched == 0
    with pytest.raises(SecretNotFound):
        await repo.get_secret(TENANT, "orders-redis")
    made = await manager.create_secret(spec(), wait=False)
    assert (made.flow_id, made.secret.name) == ("flow-x", "orders-redis")
    # The inventory: an unknown instance is a configuration error naming the secret.
    missing = SecretManager(repo, StubRotator(InstanceNotFound()), clock)
    with pytest.raises(InvalidParameterValue, match="1300000001/other"):
        await missing.reconcile([spec(), spec("other")])

"""Contract tests of fleet jobs in the store, on SQLite and PostgreSQL: a job is selected (tenant,
product, id glob, region, account per engine) and written with its targets in waves; one node
claims it and another cannot until the lease lapses; a node that lost the job cannot write
about it (``LeaseLost``); a target's password is sealed, never stored in clear, and wiped when
its attempt fails; a task is found again by its attempt's request id; resume retries the failed
targets and refuses a finished job."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from keyturn.core.audit import AuditOutcome
from keyturn.core.cluster import Fence
from keyturn.core.errors import Conflict, InvalidParameterValue, LeaseLost, NotFound
from keyturn.core.fleet import (
    FleetJob,
    FleetOptions,
    FleetTarget,
    JobState,
    Selector,
    TargetState,
    parse_accounts,
    parse_labels,
)
from keyturn.core.model import EngineKind, KeySource, Product, Tenant
from keyturn.core.secrets import Secret
from keyturn.core.tasks import NewTask, TaskKind
from keyturn.service.admin import Admin
from keyturn.service.fleet import FleetJobs
from keyturn.store.audit import SqlAuditLog
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import BACKEND_KEY, StoreBackend

TENANT = "1300000001"


async def _fleet(store: SqlStore) -> tuple[FleetJobs, SqlFleetRepo]:
    await store.put_tenant(Tenant(id=TENANT, name="t"), KeySource.CLI)
    admin = Admin(store)
    for n in range(12):
        await admin.add_instance(
            tenant_id=TENANT,
            instance_id=f"crs-fleet{n:04d}",
            product=Product.TENCENT_REDIS,
            region="ap-east" if n % 4 == 0 else "ap-west",
            node_urls=[Secret(f"redis://kt:pw@127.0.0.1:{20000 + n}")],
        )
    await admin.add_instance(
        tenant_id=TENANT,
        instance_id="postgres-fleet0001",
        product=Product.TENCENT_POSTGRES,
        region="ap-west",
        node_urls=[Secret("postgresql://postgres:pw@127.0.0.1:1")],
    )
    repo = SqlFleetRepo(store.db)
    return FleetJobs(store, repo), repo


async def test_selection_waves_and_accounts(backend_store: SqlStore) -> None:
    fleet, repo = await _fleet(backend_store)
    with pytest.raises(InvalidParameterValue, match="postgres"):
        await fleet.start(Selector(tenant_id=TENANT), FleetOptions())
    with pytest.raises(InvalidParameterValue, match="no instance"):
        await fleet.start(Selector(tenant_id=TENANT, instances="crs-none*"), FleetOptions())
    with pytest.raises(NotFound):
        await fleet.start(Selector(tenant_id="1399999999"), FleetOptions())
    accounts = parse_accounts(["postgres:app"])
    job = await fleet.start(Selector(tenant_id=TENANT, accounts=accounts), FleetOptions(canary=2))
    assert job.state is JobState.RUNNING and job.counts.total == 13 and job.waves == 3
    targets = await repo.targets(job.id, after_seq=-1, limit=100)
    assert [t.wave for t in targets] == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]
    assert targets[-1].account == "app" and targets[0].account == "default"
    east = await fleet.start(
        Selector(tenant_id=TENANT, product=Product.TENCENT_REDIS, region="ap-east",
                 instances="crs-fleet000*"),
        FleetOptions(),
    )  # fmt: skip
    picked = await repo.targets(east.id, after_seq=-1, limit=100)
    assert [t.instance_id for t in picked] == ["crs-fleet0000", "crs-fleet0004", "crs-fleet0008"]
    assert {j.id for j in await fleet.jobs(TENANT)} == {job.id, east.id}
    assert Selector.from_json(job.selector.to_json()).accounts == {EngineKind.POSTGRES: "app"}


async def test_one_node_drives_a_job_and_a_lost_lease_writes_nothing(
    backend_store: SqlStore, store_backend: StoreBackend
) -> None:
    fleet, repo = await _fleet(backend_store)
    job = await fleet.start(
        Selector(tenant_id=TENANT, product=Product.TENCENT_REDIS), FleetOptions(canary=1)
    )
    claimed = await repo.claim_job("node-a", 30, [])
    assert claimed is not None and claimed.owner == "node-a"
    assert await repo.claim_job("node-b", 30, []) is None  # held
    mine = Fence("node-a", claimed.fence)
    [first] = await repo.next_pending(job.id, 0, 10)
    password = Secret("Fleet-Pw-0123456789")
    taken = await repo.mark_in_flight(mine, first, password)
    assert taken.state is TargetState.IN_FLIGHT and taken.attempts == 1
    with pytest.raises(Conflict):
        await repo.mark_in_flight(mine, first, password)  # no longer pending
    assert await repo.target_password(taken) == password
    with store_backend.raw() as raw:
        sealed = raw.execute("SELECT password_sealed FROM fleet_targets").fetchall()
    assert all(row[0] is None or password.reveal() not in row[0] for row in sealed)
    # A task created just before its id was recorded is found by the attempt's request id.
    assert await repo.find_task(taken) is None
    task = await backend_store.create_task(
        NewTask(
            tenant_id=TENANT,
            instance_id=taken.instance_id,
            account=taken.account,
            kind=TaskKind.RESET_PASSWORD,
            request_id=taken.request_id(),
            steps=(),
        ),
        pending=password,
    )
    assert await repo.find_task(taken) == task.id
    # Another node takes the job over once node-a let it go: node-a's writes are refused.
    other = await open_store(store_backend.url, AesGcmSecretBox(BACKEND_KEY), FakeClock(tick=1))
    try:
        await repo.release_job(mine, job.id)
        taken_over = await SqlFleetRepo(other.db).claim_job("node-b", 30, [])
        assert taken_over is not None and taken_over.fence == claimed.fence + 1
        with pytest.raises(LeaseLost):
            await repo.record_task(mine, taken, task.id)
        with pytest.raises(LeaseLost):
            await repo.renew_job(mine, job.id, 30)
    finally:
        await other.close()
    theirs = Fence("node-b", claimed.fence + 1)
    await repo.finish_target(theirs, taken, TargetState.FAILED, "engine down")
    assert await repo.target_password(taken) is None  # wiped with the failed attempt
    paused = await repo.set_state(job.id, JobState.PAUSED, "threshold", expect=(JobState.RUNNING,))
    assert paused.counts.failed == 1 and paused.reason == "threshold"
    resumed = await fleet.resume(job.id)
    assert resumed.state is JobState.RUNNING and resumed.counts.failed == 0
    assert resumed.counts.pending == resumed.counts.total
    aborted = await fleet.abort(job.id)
    assert aborted.state is JobState.ABORTED
    with pytest.raises(Conflict):
        await fleet.resume(job.id)
    with pytest.raises(NotFound):
        await fleet.status(job.id, "1399999999")


async def test_labels_are_stored_and_select_targets(backend_store: SqlStore) -> None:
    fleet, repo = await _fleet(backend_store)
    admin = Admin(backend_store)
    for n, team in ((1, "orders"), (2, "orders"), (3, "billing")):
        await admin.add_instance(
            tenant_id=TENANT,
            instance_id=f"crs-label{n:04d}",
            product=Product.TENCENT_REDIS,
            region="ap-west",
            node_urls=[Secret(f"redis://kt:pw@127.0.0.1:{21000 + n}")],
            labels={"env": "prod" if n < 3 else "dev", "team": team},
        )
    stored = await backend_store.get_instance(TENANT, "crs-label0001")
    assert stored.labels == (("env", "prod"), ("team", "orders"))
    unlabelled = await backend_store.get_instance(TENANT, "crs-fleet0001")
    assert unlabelled.labels == ()
    # All selectors must match; a re-registration replaces the labels.
    prod = await fleet.start(
        Selector(tenant_id=TENANT, labels=parse_labels(["env=prod", "team=orders"])),
        FleetOptions(),
    )
    picked = await repo.targets(prod.id, after_seq=-1, limit=100)
    assert [t.instance_id for t in picked] == ["crs-label0001", "crs-label0002"]
    assert Selector.from_json(prod.selector.to_json()).labels == prod.selector.labels
    await admin.add_instance(
        tenant_id=TENANT,
        instance_id="crs-label0002",
        product=Product.TENCENT_REDIS,
        region="ap-west",
        node_urls=[Secret("redis://kt:pw@127.0.0.1:21002")],
        labels={"env": "dev"},
    )
    assert (await backend_store.get_instance(TENANT, "crs-label0002")).labels == (("env", "dev"),)
    dev = await fleet.start(
        Selector(tenant_id=TENANT, labels=parse_labels(["env=dev"])), FleetOptions()
    )
    picked = await repo.targets(dev.id, after_seq=-1, limit=100)
    assert [t.instance_id for t in picked] == ["crs-label0002", "crs-label0003"]
    with pytest.raises(InvalidParameterValue, match="no instance"):
        await fleet.start(
            Selector(tenant_id=TENANT, labels=parse_labels(["team=nobody"])), FleetOptions()
        )
    with pytest.raises(InvalidParameterValue, match="label"):
        await admin.add_instance(
            tenant_id=TENANT,
            instance_id="crs-label0009",
            product=Product.TENCENT_REDIS,
            region="ap-west",
            node_urls=[Secret("redis://kt:pw@127.0.0.1:21009")],
            labels={"Env": "x"},
        )


async def _claimed_first(store: SqlStore) -> tuple[SqlFleetRepo, FleetJob, Fence, FleetTarget]:
    """A Redis job claimed by node-a: the repo, the job, its fence and its first target."""
    fleet, repo = await _fleet(store)
    job = await fleet.start(
        Selector(tenant_id=TENANT, product=Product.TENCENT_REDIS), FleetOptions()
    )
    claimed = await repo.claim_job("node-a", 30, [])
    assert claimed is not None
    fence = Fence("node-a", claimed.fence)
    return repo, job, fence, (await repo.next_pending(job.id, 0, 1))[0]


async def test_a_target_records_its_secret_flow(backend_store: SqlStore) -> None:
    repo, job, fence, first = await _claimed_first(backend_store)
    assert await repo.secret_for(TENANT, first.instance_id, "default") is None
    taken = await repo.mark_in_flight(fence, first, Secret("Pw-1234567890ab"), flow_id="flow-1")
    assert taken.flow_id == "flow-1"
    assert [t.flow_id for t in await repo.in_flight(job.id)] == ["flow-1"]
    await repo.finish_target(fence, taken, TargetState.FAILED, "down")
    assert await repo.retry_unsuccessful(job.id) == 1
    again = (await repo.targets(job.id, after_seq=-1, limit=1))[0]
    assert again.state is TargetState.PENDING and again.flow_id is None


async def test_a_target_s_end_and_its_outcome_record_are_one_unit_of_work(
    backend_store: SqlStore,
) -> None:
    # The runner ends a target and records its outcome together: as two commits, a crash
    # between them left an ended target whose record the restart never writes.
    repo, job, fence, first = await _claimed_first(backend_store)
    taken = await repo.mark_in_flight(fence, first, Secret("Pw-1234567890ab"))
    audit = SqlAuditLog(backend_store)
    record = taken.audit_event(TENANT, AuditOutcome.SUCCEEDED, at=FakeClock().now())
    commits: list[int] = []
    sa.event.listen(backend_store.db.engine.sync_engine, "commit", lambda _c: commits.append(1))
    async with repo.writes_together():
        await repo.finish_target(fence, taken, TargetState.SUCCEEDED, "")
        await audit.append(record)
    ended = (await repo.targets(job.id, after_seq=-1, limit=1))[0]
    assert ended.state is TargetState.SUCCEEDED
    assert [r.event.outcome for r in await audit.tail(1)] == [AuditOutcome.SUCCEEDED]
    assert len(commits) == 1  # never the end without its record
